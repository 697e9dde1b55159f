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
  bool sm90_flash = false;
};

/// Throws flatattn::Error exactly as forward() would when no built family serves this device/dtype.
PathInfo path_info(int device, DType dtype);

/// The instances of this build, one line per (family, dataflow, dtype, variant) with its head dims.
std::string built_instances();

}  // namespace flatattn::cuda
