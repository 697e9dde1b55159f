// The oracle's and the checks' task loops on OpenMP threads: independent tasks (a (b, h) of the forward, a
// (b, kv head) of the backward, ...) run in parallel, and whatever they add into shared accumulators is added
// by commit(i) in ascending task order, one task at a time, so every result is bitwise the same as the
// single-threaded loop's, whatever the thread count.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>

namespace flatattn::ref {

/// Threads for a loop of n tasks: omp_get_max_threads() (OMP_NUM_THREADS, omp_set_num_threads), at most n,
/// and 1 inside an already-parallel region (a caller's threads are not multiplied).
inline int task_threads(std::int64_t n) {
  if (omp_in_parallel()) return 1;
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(omp_get_max_threads(), n)));
}

/// Runs work(i) for i in [0, n) on task_threads(n) threads, then commit(i, state) in ascending i, one at a
/// time (an OpenMP ordered region), with the state work(i) returned: work must touch only what task i owns,
/// commit may add into shared accumulators. At most one state per thread is alive at a time. The first
/// exception thrown by work or commit is rethrown after the loop (once one has been thrown, no commit runs).
template <class Work, class Commit>
void ordered_tasks(std::int64_t n, Work&& work, Commit&& commit) {
  std::exception_ptr error;
  std::mutex error_lock;
  auto keep = [&](std::exception_ptr e) {
    const std::lock_guard<std::mutex> lock(error_lock);
    if (!error) error = e;
  };
#pragma omp parallel for ordered schedule(dynamic, 1) num_threads(task_threads(n))
  for (std::int64_t i = 0; i < n; ++i) {
    bool done = false;
    decltype(work(i)) state{};
    try {
      state = work(i);
      done = true;
    } catch (...) {
      keep(std::current_exception());
    }
#pragma omp ordered
    {
      bool failed;
      {
        const std::lock_guard<std::mutex> lock(error_lock);
        failed = error != nullptr;
      }
      if (done && !failed) {
        try {
          commit(i, state);
        } catch (...) {
          keep(std::current_exception());
        }
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

/// Runs work(i) for i in [0, n) on task_threads(n) threads (tasks independent: each writes only what it
/// owns); the first exception thrown is rethrown after the loop.
template <class Work>
void parallel_tasks(std::int64_t n, Work&& work) {
  std::exception_ptr error;
  std::mutex error_lock;
#pragma omp parallel for schedule(dynamic, 1) num_threads(task_threads(n))
  for (std::int64_t i = 0; i < n; ++i) {
    try {
      work(i);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_lock);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

/// Runs work(lo, hi) over [0, n) cut into ranges of `grain` (the last one shorter), as parallel_tasks: for
/// element-wise loops, where one task per element would cost more than the element.
template <class Work>
void parallel_ranges(std::int64_t n, std::int64_t grain, Work&& work) {
  parallel_tasks((n + grain - 1) / grain, [&](std::int64_t c) { work(c * grain, std::min(n, (c + 1) * grain)); });
}

}  // namespace flatattn::ref
