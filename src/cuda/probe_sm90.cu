// A kernel compiled with exactly the sm90 family's target (sm_90a): if it loads, the family's kernels load.
#include <cuda_runtime.h>

#include "src/cuda/launch_api.h"

namespace flatattn::cuda {

__global__ void probe_sm90_kernel() {}

int probe_sm90(int* ptx_version, int* binary_version) {
  cudaFuncAttributes attr{};
  const cudaError_t e = cudaFuncGetAttributes(&attr, probe_sm90_kernel);
  *ptx_version = attr.ptxVersion;
  *binary_version = attr.binaryVersion;
  return static_cast<int>(e);
}

}  // namespace flatattn::cuda
