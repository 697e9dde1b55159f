// Where a call's host time goes, read with CUPTI's callback API (NVIDIA CUPTI, "Callback API"): every
// CUDA runtime API call the process makes reports its entry and exit, so host_overhead can split a
// forward()/backward() call into the time spent inside the CUDA runtime (launches, memsets, attribute
// queries) and the library's own time around them, and time the span from the C++ entry to the first
// kernel launch exactly. Built only where CUPTI is found (bench/gpu/CMakeLists.txt); elsewhere
// probe_start() returns false and the readings stay empty.
#pragma once

#include <chrono>

namespace flatattn::bench {

using Clock = std::chrono::steady_clock;

/// What the probe saw since the last probe_reset(), on the calling thread.
struct ProbeReading {
  int api_calls = 0;             ///< CUDA runtime API calls that returned
  int launches = 0;              ///< of which kernel launches (cudaLaunchKernel and its variants)
  double inside_us = 0;          ///< time between their entries and exits
  Clock::time_point first_launch{};  ///< entry of the first launch (valid when launches > 0)
};

/// Subscribes to the runtime API callbacks; false when CUPTI is not built in or refuses.
bool probe_start();
/// Forgets what was seen (call right before the timed call).
void probe_reset();
/// What was seen since probe_reset().
ProbeReading probe_read();
/// Unsubscribes.
void probe_stop();

}  // namespace flatattn::bench
