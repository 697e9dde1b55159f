// Ring attention in the cost model (src/model/context_parallel.h): efficiencies are fractions, a slower link
// or less work per hop costs efficiency, only Hkv heads travel, and bad input is refused.
#include <gtest/gtest.h>

#include <vector>

#include "flatattn/error.h"
#include "src/model/context_parallel.h"
#include "src/model/hardware.h"
#include "src/model/planner.h"

using namespace flatattn;
using namespace flatattn::model;

namespace {

RingShape ring(int world, std::int64_t n, bool causal, std::int64_t hkv = 8) {
  RingShape s;
  s.world = world;
  s.n_local = n;
  s.causal = causal;
  s.hkv = hkv;
  return s;
}

}  // namespace

TEST(ContextParallel, EfficiencyIsAFractionForTheIssueGrid) {
  const Gpu gpu = load_hardware("h100").gpu;
  const std::vector<KernelVariant> vs = load_kernel_variants("default");
  for (const bool causal : {true, false})
    for (const std::int64_t n : {8192, 32768})
      for (const int w : {2, 4, 8}) {
        const RingPrediction p = predict_ring(gpu, vs, ring(w, n, causal), Link{});
        ASSERT_EQ(p.hops.size(), static_cast<std::size_t>(w));
        EXPECT_GT(p.efficiency, 0.0);
        EXPECT_LE(p.efficiency, 1.0 + 1e-9) << "causal " << causal << " n " << n << " W " << w;
        EXPECT_GT(p.single_tflops, 0.0);
        EXPECT_EQ(p.hops.back().link_fwd_s, 0.0);  // the last hop sends no K/V
        for (const RingHop& h : p.hops) EXPECT_GT(h.compute_s, 0.0);
      }
}

TEST(ContextParallel, SlowLinksAndShortShardsCostEfficiency) {
  const Gpu gpu = load_hardware("h100").gpu;
  const std::vector<KernelVariant> vs = load_kernel_variants("default");
  const RingPrediction fast = predict_ring(gpu, vs, ring(8, 8192, true), Link{});
  const RingPrediction slow = predict_ring(gpu, vs, ring(8, 8192, true), Link{25, 0.8});  // a PCIe-class link
  EXPECT_LT(slow.efficiency, fast.efficiency);
  EXPECT_GT(slow.link_over_compute, 1.0);  // the link is exposed
  // per hop, compute grows as n^2 and the transfer as n: longer shards hide the link better
  EXPECT_LT(predict_ring(gpu, vs, ring(8, 2048, false), Link{25, 0.8}).efficiency,
            predict_ring(gpu, vs, ring(8, 32768, false), Link{25, 0.8}).efficiency);
  // GQA: only the Hkv heads travel
  const RingPrediction mha = predict_ring(gpu, vs, ring(4, 8192, false, 32), Link{});
  const RingPrediction gqa = predict_ring(gpu, vs, ring(4, 8192, false, 8), Link{});
  EXPECT_NEAR(mha.hops[0].link_fwd_s, 4 * gqa.hops[0].link_fwd_s, 1e-12);
}

TEST(ContextParallel, RefusesBadInput) {
  const Gpu gpu = load_hardware("h100").gpu;
  const std::vector<KernelVariant> vs = load_kernel_variants("default");
  EXPECT_THROW(predict_ring(gpu, vs, ring(0, 8192, false), Link{}), Error);
  EXPECT_THROW(predict_ring(gpu, vs, ring(4, 8191, true), Link{}), Error);  // zigzag needs two equal chunks
  EXPECT_THROW(predict_ring(gpu, vs, ring(4, 8192, false), Link{0, 0.8}), Error);
  EXPECT_THROW(predict_ring(gpu, vs, ring(4, 8192, false), Link{450, 1.5}), Error);
}
