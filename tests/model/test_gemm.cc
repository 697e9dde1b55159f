// The single-operator model (gemm.h): the reuse analysis against a brute-force walk of the tiled loop
// nest, and the PE array's spatial mapping (idle PEs when a spatial dimension is smaller than the array).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <map>
#include <random>
#include <set>

#include "src/model/gemm.h"
#include "src/check/case.h"

using namespace flatattn::model;

namespace {

/// Walks the tile loops in order with one buffered tile per operand and counts the elements fetched:
/// an operand tile is fetched when it differs from the one held; an output tile is written back when
/// it is evicted and read back when it returns partially accumulated.
GemmTraffic brute_force(const GemmShape& g, const GemmTiling& t) {
  const std::int64_t trips[3] = {(g.m + t.tm - 1) / t.tm, (g.n + t.tn - 1) / t.tn, (g.k + t.tk - 1) / t.tk};
  const std::int64_t tile[3] = {t.tm, t.tn, t.tk}, full[3] = {g.m, g.n, g.k};
  auto extent = [&](int dim, std::int64_t idx) { return std::min(tile[dim], full[dim] - idx * tile[dim]); };
  GemmTraffic r;
  std::array<std::int64_t, 2> held_a{-1, -1}, held_b{-1, -1}, held_c{-1, -1};
  std::set<std::array<std::int64_t, 2>> c_started;
  auto evict_c = [&] {
    if (held_c[0] >= 0) r.c_writes += double(extent(0, held_c[0]) * extent(1, held_c[1]));
  };
  std::int64_t idx[3];
  const int o0 = int(t.order[0]), o1 = int(t.order[1]), o2 = int(t.order[2]);
  for (idx[o0] = 0; idx[o0] < trips[o0]; ++idx[o0])
    for (idx[o1] = 0; idx[o1] < trips[o1]; ++idx[o1])
      for (idx[o2] = 0; idx[o2] < trips[o2]; ++idx[o2]) {
        const std::int64_t m = idx[0], n = idx[1], k = idx[2];
        if (held_a != std::array<std::int64_t, 2>{m, k}) {
          held_a = {m, k};
          r.a_reads += double(extent(0, m) * extent(2, k));
        }
        if (held_b != std::array<std::int64_t, 2>{k, n}) {
          held_b = {k, n};
          r.b_reads += double(extent(2, k) * extent(1, n));
        }
        if (held_c != std::array<std::int64_t, 2>{m, n}) {
          evict_c();
          held_c = {m, n};
          if (!c_started.insert({m, n}).second) r.c_reads += double(extent(0, m) * extent(1, n));
        }
      }
  evict_c();
  for (double* x : {&r.a_reads, &r.b_reads, &r.c_writes, &r.c_reads}) *x *= g.instances;
  return r;
}

}  // namespace

TEST(Gemm, ReuseAnalysisMatchesTheLoopNest) {
  const std::uint64_t seed = flatattn::check::fresh_seed();
  SCOPED_TRACE("FLATATTN_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::array<LoopDim, 3> order{LoopDim::m, LoopDim::n, LoopDim::k};
  for (int i = 0; i < 300; ++i) {
    GemmShape g{double(1 + rng() % 3), std::int64_t(1 + rng() % 40), std::int64_t(1 + rng() % 40), std::int64_t(1 + rng() % 40)};
    std::shuffle(order.begin(), order.end(), rng);
    GemmTiling t;
    t.order = order;
    t.tm = 1 + std::int64_t(rng() % g.m);
    t.tn = 1 + std::int64_t(rng() % g.n);
    t.tk = 1 + std::int64_t(rng() % g.k);
    const GemmTraffic want = brute_force(g, t), got = buffer_traffic(g, t);
    SCOPED_TRACE(t.describe() + " on " + std::to_string(g.m) + "x" + std::to_string(g.n) + "x" + std::to_string(g.k));
    EXPECT_EQ(got.a_reads, want.a_reads);
    EXPECT_EQ(got.b_reads, want.b_reads);
    EXPECT_EQ(got.c_writes, want.c_writes);
    EXPECT_EQ(got.c_reads, want.c_reads);
  }
}

TEST(Gemm, StationarityFollowsTheInnermostLoop) {
  GemmTiling t;
  t.order = {LoopDim::m, LoopDim::n, LoopDim::k};
  EXPECT_EQ(t.stationarity(), Stationarity::output);
  t.order = {LoopDim::n, LoopDim::k, LoopDim::m};
  EXPECT_EQ(t.stationarity(), Stationarity::weight);
  t.order = {LoopDim::k, LoopDim::m, LoopDim::n};
  EXPECT_EQ(t.stationarity(), Stationarity::input);
}

TEST(Gemm, SpatialMappingLeavesPesIdleOnSmallDimensions) {
  Accelerator acc;
  acc.pe_rows = acc.pe_cols = 256;
  const double fill = 512;
  // L = Q K^T at N = 4096, d = 64: output stationary maps (N x N) and fills the array...
  const GemmShape l{12, 4096, 4096, 64};
  EXPECT_EQ(array_work(acc, l, Stationarity::output, 4096, 4096, 64).cycles, macs(l) / 65536 + fill);
  // ... weight stationary maps (d x N): only 64 of 256 rows work, 4x the cycles.
  EXPECT_EQ(array_work(acc, l, Stationarity::weight, 4096, 4096, 64).cycles, 4 * macs(l) / 65536 + fill);
  // A = P V: input stationary maps (N x N), output stationary (N x d) wastes 3/4 of the columns.
  const GemmShape a{12, 4096, 64, 4096};
  EXPECT_EQ(array_work(acc, a, Stationarity::input, 4096, 64, 4096).cycles, macs(a) / 65536 + fill);
  EXPECT_EQ(array_work(acc, a, Stationarity::output, 4096, 64, 4096).cycles, 4 * macs(a) / 65536 + fill);
  // Tiles smaller than the array side fold badly: 100-row tiles of a 256-row array.
  const GemmShape s{1, 1000, 256, 64};
  EXPECT_EQ(array_work(acc, s, Stationarity::output, 100, 256, 64).cycles, 10 * 64 + fill);
}
