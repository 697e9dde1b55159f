// Small host helpers around the CUDA runtime: checked calls that throw flatattn::Error, the current
// device's properties (cached), a guard that selects a device for one call, and stream-ordered
// scratch memory for one call.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "flatattn/error.h"

namespace flatattn::cuda {

/// Throws Error(runtime, what, cudaGetErrorString(e), ...) when e != cudaSuccess.
void check(cudaError_t e, const char* what);

struct DeviceInfo {
  int index = 0;
  int cc = 0;          ///< compute capability, major * 10 + minor
  int sm_count = 0;
  int smem_optin = 0;  ///< max dynamic shared memory per block (opt-in), bytes
  std::string name;
};

/// Properties of device `index`, read once per process.
const DeviceInfo& device_info(int index);

/// Makes `index` current for its lifetime, restoring the previous device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

/// Stream-ordered device memory for one call (cudaMallocAsync / cudaFreeAsync on the caller's
/// stream: no device-wide synchronization, and capturable in a CUDA graph). Freed when the call ends,
/// also when it throws; the memory is reused by later work on the stream once the kernels are done.
/// `what`, `limit` and `fix` name the buffer in the Error thrown when the allocation fails.
class StreamBuffer {
 public:
  StreamBuffer(std::size_t bytes, cudaStream_t stream, const char* what, const char* limit, const char* fix);
  ~StreamBuffer() { cudaFreeAsync(ptr_, stream_); }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  [[nodiscard]] unsigned char* data() const { return static_cast<unsigned char*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace flatattn::cuda
