// The little the CLI needs from a GPU: count devices, allocate, copy, synchronize and time with events.
// cli/device_cuda.cc implements it in CUDA builds, cli/device_none.cc (errors) otherwise. CPU tensors
// never come here.
#pragma once

#include <cstddef>
#include <string>

namespace flatattn::cli::gpu {

/// Number of CUDA devices (0 without a driver or GPU). Initializes CUDA in the calling process, so
/// the CLI asks from a child process (cli/child.h) and keeps its parent CUDA-free for later forks.
int device_count();
/// "NVIDIA H100 80GB HBM3, cc 9.0, driver 13.0" of device 0.
std::string describe();

void* alloc(std::size_t bytes);
void release(void* p);
void to_device(void* dst, const void* src, std::size_t bytes);
void to_host(void* dst, const void* src, std::size_t bytes);
void synchronize();
/// Device memory in use on device 0 (total - free), bytes.
std::size_t used_bytes();

/// Elapsed device time of the work enqueued between start() and stop(), in milliseconds.
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  double stop_ms();

 private:
  void* begin_ = nullptr;
  void* end_ = nullptr;
};

}  // namespace flatattn::cli::gpu
