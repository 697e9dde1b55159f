// A kernel compiled with exactly one family's targets: if it loads, the family's kernels load. Compiled once
// per family (src/cuda/CMakeLists.txt defines FLATATTN_PROBE_FAMILY = sm75 | sm80 | sm86 | sm90), which
// names the entry probe_<family> (launch_api.h).
#include <cuda_runtime.h>

#include "src/cuda/launch_api.h"

#define FLATATTN_PROBE_CAT2(a, b) a##b
#define FLATATTN_PROBE_CAT(a, b) FLATATTN_PROBE_CAT2(a, b)

namespace flatattn::cuda {

__global__ void FLATATTN_PROBE_CAT(FLATATTN_PROBE_CAT(probe_, FLATATTN_PROBE_FAMILY), _kernel)() {}

int FLATATTN_PROBE_CAT(probe_, FLATATTN_PROBE_FAMILY)(int* ptx_version, int* binary_version) {
  cudaFuncAttributes attr{};
  const cudaError_t e =
      cudaFuncGetAttributes(&attr, FLATATTN_PROBE_CAT(FLATATTN_PROBE_CAT(probe_, FLATATTN_PROBE_FAMILY), _kernel));
  *ptx_version = attr.ptxVersion;
  *binary_version = attr.binaryVersion;
  return static_cast<int>(e);
}

}  // namespace flatattn::cuda
