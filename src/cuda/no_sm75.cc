// Compiled when FLATATTN_CUDA_PTX75=OFF: the sm75 family is absent.
#include <cuda_runtime.h>

#include "src/cuda/launch_api.h"

namespace flatattn::cuda {

int probe_sm75(int* ptx_version, int* binary_version) {
  *ptx_version = *binary_version = 0;
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}

}  // namespace flatattn::cuda
