// Probes of the families this build left out (FLATATTN_CUDA_ARCHS without any sm_80/87/90 or
// sm_86/89, no 90 for the sm_90a family, or FLATATTN_CUDA_PTX75=OFF): they never load.
#include <cuda_runtime.h>

#include "src/cuda/launch_api.h"

namespace flatattn::cuda {

#ifndef FLATATTN_HAVE_SM80
int probe_sm80(int* ptx_version, int* binary_version) {
  *ptx_version = *binary_version = 0;
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}
int dropout_mask_sm80(std::uint8_t*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, const DropoutStream&,
                      void*) {
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}
#endif
#ifndef FLATATTN_HAVE_SM86
int probe_sm86(int* ptx_version, int* binary_version) {
  *ptx_version = *binary_version = 0;
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}
int dropout_mask_sm86(std::uint8_t*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, const DropoutStream&,
                      void*) {
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}
#endif
#ifndef FLATATTN_HAVE_SM90
int probe_sm90(int* ptx_version, int* binary_version) {
  *ptx_version = *binary_version = 0;
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}
int dropout_mask_sm90(std::uint8_t*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, const DropoutStream&,
                      void*) {
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}
#endif
#ifndef FLATATTN_HAVE_SM75
int probe_sm75(int* ptx_version, int* binary_version) {
  *ptx_version = *binary_version = 0;
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}
int dropout_mask_sm75(std::uint8_t*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, const DropoutStream&,
                      void*) {
  return static_cast<int>(cudaErrorNoKernelImageForDevice);
}
#endif

}  // namespace flatattn::cuda
