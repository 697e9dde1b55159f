// Static, cost-balanced split of a list of independent work items over an OpenMP team.
//
// Each item (a row tile, a key block, ...) is computed by exactly one thread with nothing shared, so
// results do not depend on how many threads run or which one takes an item: the split only balances
// time. Thread t takes the contiguous items whose cost midpoint lies in [t, t+1) * total / T, which
// keeps consecutive items (same batch and head, same packed K/V) on one thread.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "src/core/problem.h"

namespace flatattn::cpu {

/// Threads to use: Problem::num_threads, or every OpenMP thread when 0; never more than `items`, at least 1.
inline int resolve_threads(const Problem& p, std::size_t items) {
  const int want = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  return static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>(static_cast<std::size_t>(want), items)));
}

/// Items [begin, end) of thread `tid` of `nthreads`, given prefix sums of the item costs
/// (prefix.size() = items + 1, prefix[0] = 0).
struct ItemRange {
  std::size_t begin, end;
};

inline ItemRange thread_items(const std::vector<double>& prefix, int tid, int nthreads) {
  const std::size_t n = prefix.size() - 1;
  const double total = prefix[n];
  auto owner_start = [&](int t) -> std::size_t {  // first item whose midpoint is >= t * total / T
    if (t <= 0) return 0;
    if (t >= nthreads) return n;
    const double cut = total * t / nthreads;
    std::size_t lo = 0, hi = n;
    while (lo < hi) {
      const std::size_t mid = (lo + hi) / 2;
      if (0.5 * (prefix[mid] + prefix[mid + 1]) < cut) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  };
  return {owner_start(tid), owner_start(tid + 1)};
}

/// Prefix sums of costs.
inline std::vector<double> prefix_sums(const std::vector<double>& cost) {
  std::vector<double> p(cost.size() + 1, 0.0);
  for (std::size_t i = 0; i < cost.size(); ++i) p[i + 1] = p[i] + cost[i];
  return p;
}

}  // namespace flatattn::cpu
