// Internal queries of the CUDA backend for tests, benchmarks and the CLI (the entry points themselves
// are flatattn::cuda::forward/backward in src/core/backend.h).
#pragma once

#include <string>

#include "flatattn/dtype.h"
#include "src/cuda/policy/tile_size.h"

namespace flatattn::cuda {

/// Which code path serves `dtype` on device `index`, and what the driver loaded for it.
struct PathInfo {
  Family family = Family::sm80;
  int ptx_version = 0;     ///< of the family's probe kernel: 75 when the compute_75 PTX was JIT-compiled
  int binary_version = 0;  ///< the SASS that runs (e.g. 90 on an H100)
  /// The Flash forward of the head dims the sm90 family (wgmma, sm_90a) was built for runs that family
  /// instead of `family` (an sm_90 GPU, the family built, FLATATTN_CUDA_SM90 not 0), at every length.
  /// The backward of those head dims likewise.
  bool sm90_flash = false;
};

/// Throws flatattn::Error exactly as forward() would when no built family serves this device/dtype.
PathInfo path_info(int device, DType dtype);

/// The instances of this build, one line per (family, dataflow, dtype, variant) with its head dims.
std::string built_instances();

/// FLATATTN_CUDA_SM90 (0: keep an sm_90 GPU on the sm80 family) is read once per device, at its first
/// call, and cached. A process that changes the variable after that (setenv / unsetenv: the tests'
/// ScopedSm90) calls this afterwards so that the next call on every device reads it again. Cheap
/// (one atomic increment; the next call per device re-reads the variable), thread-safe.
void sm90_override_changed();

}  // namespace flatattn::cuda
