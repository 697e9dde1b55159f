// The oracle's and the checks' loops on OpenMP threads: independent tasks (blocks of rows of a (b, h), blocks
// of keys, ranges of elements) run in parallel; a task computes each value it writes exactly as the
// single-threaded loop does (same operands, same order of its sums), and sums across tasks stay on the calling
// thread, so every result is bitwise the same whatever the thread count.
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

/// Runs work(i) for i in [0, n) on task_threads(n) threads (tasks independent: each writes only what it
/// owns); the first exception thrown is rethrown after the loop.
template <class Work>
void parallel_tasks(std::int64_t n, Work&& work) {
  const int threads = task_threads(n);
  if (threads == 1) {  // no team to start (one thread, or a caller already parallel)
    for (std::int64_t i = 0; i < n; ++i) work(i);
    return;
  }
  std::exception_ptr error;
  std::mutex error_lock;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
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

/// Rows (or keys) per task when `rows` of them, all told, are cut into tasks: about 8 tasks per thread of
/// task_threads, 1 to 32 rows each (small: balance; large: less overhead per task). Where a result must not
/// depend on the thread count, each row's value must not depend on the cut.
inline std::int64_t block_rows(std::int64_t rows) {
  return std::clamp<std::int64_t>(rows / (8 * std::int64_t{task_threads(rows)}), 1, 32);
}

/// Runs work(lo, hi) over [0, n) cut into ranges of `grain` (the last one shorter), as parallel_tasks: for
/// element-wise loops, where one task per element would cost more than the element.
template <class Work>
void parallel_ranges(std::int64_t n, std::int64_t grain, Work&& work) {
  parallel_tasks((n + grain - 1) / grain, [&](std::int64_t c) { work(c * grain, std::min(n, (c + 1) * grain)); });
}

}  // namespace flatattn::ref
