#include "src/cuda/runtime.h"

#include <array>
#include <atomic>
#include <memory>
#include <mutex>

namespace flatattn::cuda {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  throw Error(Error::Kind::runtime, what, cudaGetErrorString(e), "the CUDA call must succeed",
              "check the device (nvidia-smi), free GPU memory, or run under compute-sanitizer to locate it");
}

const DeviceInfo& device_info(int index) {
  // Read on every call from any number of host threads: the hit path is one acquire load (no lock);
  // the first call per device fills its entry under the mutex. Entries live until the process ends.
  static std::mutex mu;
  static std::array<std::atomic<const DeviceInfo*>, 64> cache{};
  if (index < 0 || index >= static_cast<int>(cache.size())) {
    throw Error(Error::Kind::invalid_argument, "device.index", std::to_string(index), "0 <= index < 64",
                "pass a valid CUDA ordinal");
  }
  std::atomic<const DeviceInfo*>& slot = cache[static_cast<std::size_t>(index)];
  if (const DeviceInfo* known = slot.load(std::memory_order_acquire)) return *known;
  std::lock_guard<std::mutex> lock(mu);
  if (const DeviceInfo* known = slot.load(std::memory_order_acquire)) return *known;
  auto info = std::make_unique<DeviceInfo>();
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  info->index = index;
  info->cc = prop.major * 10 + prop.minor;
  info->sm_count = prop.multiProcessorCount;
  info->smem_optin = static_cast<int>(prop.sharedMemPerBlockOptin);
  info->name = prop.name;
  const DeviceInfo* made = info.release();
  slot.store(made, std::memory_order_release);
  return *made;
}

DeviceGuard::DeviceGuard(int index) {
  check(cudaGetDevice(&prev_), "cudaGetDevice");
  if (prev_ != index) {
    check(cudaSetDevice(index), "cudaSetDevice");
  } else {
    prev_ = -1;
  }
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0) cudaSetDevice(prev_);
}

StreamBuffer::StreamBuffer(std::size_t bytes, cudaStream_t stream, const char* what, const char* limit,
                           const char* fix)
    : stream_(stream) {
  const cudaError_t e = cudaMallocAsync(&ptr_, bytes, stream);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(Error::Kind::runtime, what, std::to_string(bytes) + " bytes: " + cudaGetErrorString(e), limit, fix);
  }
}

}  // namespace flatattn::cuda
