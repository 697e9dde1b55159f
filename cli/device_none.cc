// CUDA-less build: there is no GPU to count, and any other call is a programming error (the CLI
// rejects --device cuda before it gets here, naming the flag).
#include "cli/device.h"
#include "flatattn/error.h"

namespace flatattn::cli::gpu {

namespace {
[[noreturn]] void no_cuda() {
  throw Error(Error::Kind::unsupported, "device", "cuda", "this flatattn build has no CUDA backend",
              "rebuild with -DFLATATTN_CUDA=ON, or pass --device cpu");
}
}  // namespace

int device_count() { return 0; }
std::string describe() { no_cuda(); }
void* alloc(std::size_t) { no_cuda(); }
void release(void*) {}
void to_device(void*, const void*, std::size_t) { no_cuda(); }
void to_host(void*, const void*, std::size_t) { no_cuda(); }
void synchronize() { no_cuda(); }
std::size_t used_bytes() { no_cuda(); }
EventTimer::EventTimer() { no_cuda(); }
EventTimer::~EventTimer() = default;
void EventTimer::start() { no_cuda(); }
double EventTimer::stop_ms() { no_cuda(); }

}  // namespace flatattn::cli::gpu
