// The registry of the kernel instances this build holds (key: family, dataflow, dtype, kernel head dim,
// variant -> launcher), generated from src/cuda/inst/manifest.cmake and the build options into
// flatattn_cuda_instances.inc by src/cuda/CMakeLists.txt. Each entry carries its instance name as a
// compile-time string, so a call's Report names its kernel without building a string.
// Plain C++ (no CUDA types): dispatch.cc and family.cc ask it, the instances themselves are nvcc code.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "flatattn/dtype.h"
#include "flatattn/options.h"
#include "src/core/variant.h"
#include "src/cuda/launch_api.h"
#include "src/cuda/policy/tile_size.h"

namespace flatattn::cuda {

/// The number of DType values (the registry's and the family cache's tables have a slot per dtype).
inline constexpr int kDTypeCount = static_cast<int>(DType::i32) + 1;

/// One forward instance. `name` is "<dataflow>_<family>_<dtype>_d<D>[_<variant>]", as
/// tools/gen_instances.py names its file (checked at compile time against the key).
struct FwdInstance {
  Family family;
  Dataflow dataflow;
  DType dtype;
  int d;
  VariantId variant;
  const char* name;
  LaunchInfo (*launch)(const LaunchArgs&);
};

/// One backward instance: `name` is "bwd_<family>_<dtype>_d<D>[_<variant>]", `name_det` the same with
/// " (deterministic)" appended (the Report of a deterministic call).
struct BwdInstance {
  Family family;
  DType dtype;
  int d;
  VariantId variant;
  const char* name;
  const char* name_det;
  LaunchInfo (*launch)(const BwdLaunchArgs&);
};

/// Every instance of this build (for listings and tests; dispatch uses the lookups below).
std::span<const FwdInstance> fwd_instances();
std::span<const BwdInstance> bwd_instances();

/// The forward instance of the smallest built head dim >= d for the key, or nullptr. O(head dims built).
const FwdInstance* find_fwd(Family f, Dataflow df, DType dt, VariantId variant, std::int64_t d);

/// The backward instance of the smallest built head dim >= d for the key, or nullptr.
const BwdInstance* find_bwd(Family f, DType dt, VariantId variant, std::int64_t d);

/// Whether this build holds any instance (forward or backward) of family f.
bool has_family(Family f);

/// `name` + " (D=<d> zero-padded)": the Report's kernel when a call of head dim d runs the instance
/// `name` of a larger head dim. Built once per (name, d) and kept (at most instances x 32 head dims,
/// since CUDA head dims are multiples of 8 up to 256), so padded calls build no string either.
const std::string& padded_name(const char* name, std::int64_t d);

/// Throws Error(unsupported, "q", ...) for a request no built instance serves, listing what was built
/// (built_instances()). `kernel`: "flash" or "flat" (forward dataflows) or "backward".
[[noreturn]] void not_built(std::string_view kernel, Family f, DType dt, VariantId variant, std::int64_t d);

// built_instances() (the list of this build) is declared in src/cuda/dispatch.h for tests and the CLI.

}  // namespace flatattn::cuda
