// CUDA runtime calls of the CLI (CUDA builds only): device buffers, copies and event timing.
#include <cuda_runtime.h>

#include <string>

#include "cli/device.h"
#include "flatattn/error.h"

namespace flatattn::cli::gpu {

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(Error::Kind::runtime, what, cudaGetErrorString(e), "CUDA runtime call failed",
                "check the GPU with nvidia-smi");
}
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;  // no driver / no device: the CPU serves
  return n;
}

std::string describe() {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  int driver = 0;
  cudaDriverGetVersion(&driver);
  return std::string(p.name) + ", cc " + std::to_string(p.major) + "." + std::to_string(p.minor) + ", driver " +
         std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10);
}

void* alloc(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc");
  return p;
}
void release(void* p) { cudaFree(p); }
void to_device(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}
void to_host(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}
void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }
std::size_t used_bytes() {
  std::size_t free_b = 0, total = 0;
  check(cudaMemGetInfo(&free_b, &total), "cudaMemGetInfo");
  return total - free_b;
}

EventTimer::EventTimer() {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  begin_ = a;
  end_ = b;
}
EventTimer::~EventTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(begin_));
  cudaEventDestroy(static_cast<cudaEvent_t>(end_));
}
void EventTimer::start() { check(cudaEventRecord(static_cast<cudaEvent_t>(begin_), nullptr), "cudaEventRecord"); }
double EventTimer::stop_ms() {
  check(cudaEventRecord(static_cast<cudaEvent_t>(end_), nullptr), "cudaEventRecord");
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(end_)), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(begin_), static_cast<cudaEvent_t>(end_)), "cudaEventElapsedTime");
  return ms;
}

}  // namespace flatattn::cli::gpu
