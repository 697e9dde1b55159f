// The FLAT paper's closed forms (docs/flat-model.md): Table 1 buffers, fused vs unfused traffic,
// operational intensity independent of batch, ideal L+A runtime; and that the cost model reproduces
// them from mappings, not only from the formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "src/model/analytic.h"
#include "src/model/search.h"
#include "src/check/case.h"

using namespace flatattn::model;

namespace {

constexpr double KiB = 1024, MiB = 1024 * 1024;

/// BERT-Base attention at batch 64 (the paper's running example), fp16.
AttnProblem bert(std::int64_t n, std::int64_t batch = 64) {
  AttnProblem p;
  p.batch = batch;
  p.heads = p.kv_heads = 12;
  p.nq = p.nk = n;
  p.d = 64;
  p.elem_bytes = 2;
  return p;
}

Accelerator big_buffer(Accelerator a, double bytes) {
  a.buffer_bytes = bytes;
  return a;
}

}  // namespace

TEST(Analytic, Table1BufferValuesOfTheRunningExample) {
  // BERT, d = 64, N = 512, fp16 (docs/flat-model.md Sec. 2).
  EXPECT_EQ(analytic::flat_buffer_bytes(Granularity::H, 64, 12, 512, 64, 0, 2), 1 * MiB);
  EXPECT_EQ(analytic::flat_buffer_bytes(Granularity::R, 64, 12, 512, 64, 64, 2), 352 * KiB);
  EXPECT_EQ(analytic::flat_buffer_bytes(Granularity::R, 64, 12, 512, 64, 1, 2), 257.5 * KiB);
  EXPECT_EQ(analytic::flat_buffer_bytes(Granularity::M, 64, 12, 512, 64, 0, 2), 768 * MiB);
  // K + V double-buffered alone: 512 KiB at N = 1K and 32 MiB at N = 64K.
  EXPECT_EQ(4.0 * 1024 * 64 * 2, 512 * KiB);
  EXPECT_EQ(4.0 * 65536 * 64 * 2, 32 * MiB);
}

TEST(Analytic, Table1RowsAreTheGeneralFormula) {
  const std::uint64_t seed = flatattn::check::fresh_seed();
  SCOPED_TRACE("FLATATTN_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 50; ++i) {
    const double B = 1 + rng() % 64, H = 1 + rng() % 32, N = 1 + rng() % 70000, d = 1 + rng() % 256, R = 1 + rng() % 512;
    const double D = H * d, b = 2;
    // Table 1 as printed: M = 8BDN + BHN^2, B = 8DN + HN^2, H = 8Nd + N^2, R = 4Rd + 4Nd + RN.
    EXPECT_DOUBLE_EQ(analytic::flat_buffer_bytes(Granularity::M, B, H, N, d, R, b), b * (8 * B * D * N + B * H * N * N));
    EXPECT_DOUBLE_EQ(analytic::flat_buffer_bytes(Granularity::B, B, H, N, d, R, b), b * (8 * D * N + H * N * N));
    EXPECT_DOUBLE_EQ(analytic::flat_buffer_bytes(Granularity::H, B, H, N, d, R, b), b * (8 * N * d + N * N));
    EXPECT_DOUBLE_EQ(analytic::flat_buffer_bytes(Granularity::R, B, H, N, d, R, b), b * (4 * R * d + 4 * N * d + R * N));
  }
}

TEST(Analytic, ModelBufferNeedIsTable1) {
  const Accelerator acc = big_buffer(load_hardware("cloud").accel, 4.0 * 1024 * MiB);  // M-gran needs 768 MiB
  const AttnProblem p = bert(512);
  const struct { Granularity g; std::int64_t bx, hx, rx; } tiles[] = {
      {Granularity::M, 64, 12, 512}, {Granularity::B, 1, 12, 512}, {Granularity::H, 1, 1, 512},
      {Granularity::R, 1, 1, 64},    {Granularity::R, 1, 1, 1}};
  for (const auto& t : tiles) {
    const Cost c = cost_flat(acc, p, FlatMapping{t.g, t.bx, t.hx, t.rx});
    ASSERT_TRUE(c.feasible) << c.infeasible_reason;
    EXPECT_DOUBLE_EQ(c.buffer_bytes, analytic::flat_buffer_bytes(t.g, 64, 12, 512, 64, double(t.rx), 2)) << name(t.g);
  }
}

TEST(Analytic, FusedAndUnfusedTrafficOfTheRunningExample) {
  // 201 MB fused vs 1.01 GB unfused (1.81 GB with softmax as its own round trip).
  EXPECT_EQ(analytic::fused_traffic_bytes(64, 12, 512, 64, 2), 201326592.0);
  EXPECT_EQ(analytic::unfused_traffic_bytes(64, 12, 512, 64, 2, false), 1006632960.0);
  EXPECT_EQ(analytic::unfused_traffic_bytes(64, 12, 512, 64, 2, true), 1811939328.0);
  EXPECT_NEAR(analytic::fused_traffic_bytes(64, 12, 512, 64, 2) / 1e6, 201, 0.5);
  EXPECT_NEAR(analytic::unfused_traffic_bytes(64, 12, 512, 64, 2, false) / 1e9, 1.01, 0.005);
  EXPECT_NEAR(analytic::unfused_traffic_bytes(64, 12, 512, 64, 2, true) / 1e9, 1.81, 0.005);
}

TEST(Analytic, ModelTrafficMatchesTheClosedForms) {
  const AttnProblem p = bert(512);
  const Accelerator acc = big_buffer(load_hardware("cloud").accel, 4 * MiB);
  // FLAT with the whole tile on chip moves Q, K, V, O exactly once.
  const Cost flat = cost_flat(acc, p, FlatMapping{Granularity::H, 1, 1, 512});
  ASSERT_TRUE(flat.feasible);
  EXPECT_EQ(flat.offchip_bytes, analytic::fused_traffic_bytes(64, 12, 512, 64, 2));
  EXPECT_EQ(flat.spilled_bytes, 0);
  // Unfused with whole-operand tiles: L written once and read once (+ a softmax round trip).
  UnfusedMapping m;
  m.l.order = {LoopDim::m, LoopDim::n, LoopDim::k};
  m.l.tm = 512, m.l.tn = 512, m.l.tk = 64;
  m.a.order = {LoopDim::m, LoopDim::n, LoopDim::k};
  m.a.tm = 512, m.a.tn = 64, m.a.tk = 512;
  const Accelerator huge = big_buffer(acc, 64 * MiB);
  m.softmax_fused = true;
  EXPECT_EQ(cost_unfused(huge, p, m).offchip_bytes, analytic::unfused_traffic_bytes(64, 12, 512, 64, 2, false));
  m.softmax_fused = false;
  EXPECT_EQ(cost_unfused(huge, p, m).offchip_bytes, analytic::unfused_traffic_bytes(64, 12, 512, 64, 2, true));
  // The searched FLEX never beats the unfused lower bound, FLAT never beats the fused one.
  const Evaluated flex = best_mapping(huge, p, DataflowKind::flex);
  EXPECT_GE(flex.cost.offchip_bytes, analytic::unfused_traffic_bytes(64, 12, 512, 64, 2, false));
  EXPECT_GE(best_mapping(huge, p, DataflowKind::flat).cost.offchip_bytes, analytic::fused_traffic_bytes(64, 12, 512, 64, 2));
}

TEST(Analytic, SpillingInterpolatesBetweenResidentAndRefetchedKV) {
  // R-gran with Rx = 64 at N = 4096: as the buffer shrinks from the Table 1 need, K/V residency falls and
  // traffic rises monotonically from the fused form towards the K/V-refetch form b * 2BND (1 + N / Rx).
  const AttnProblem p = bert(4096);
  const Accelerator cloud = load_hardware("cloud").accel;
  const FlatMapping m{Granularity::R, 1, 1, 64};
  const double need = analytic::flat_buffer_bytes(Granularity::R, 64, 12, 4096, 64, 64, 2);
  const double lo = analytic::fused_traffic_bytes(64, 12, 4096, 64, 2);
  const double hi = analytic::fused_refetch_traffic_bytes(64, 12, 4096, 64, 64, 2);
  double prev = 0;
  for (double frac : {1.0, 0.9, 0.7, 0.5, 0.3}) {
    const Cost c = cost_flat(big_buffer(cloud, need * frac), p, m);
    ASSERT_TRUE(c.feasible) << c.infeasible_reason;
    if (frac == 1.0) EXPECT_EQ(c.offchip_bytes, lo);
    EXPECT_GE(c.offchip_bytes, prev);
    EXPECT_LE(c.offchip_bytes, hi);
    EXPECT_NEAR(c.spilled_bytes, need * (1 - frac), 1e-6 * need);
    prev = c.offchip_bytes;
  }
  EXPECT_GT(prev, lo * 5);
}

TEST(Analytic, IntensityIsIndependentOfBatch) {
  // Closed form: I_L = 2 N d / (b (2 d + N)) for every B; 51.2 FLOP/B at N = 512, below 2 d / b = 64.
  for (double B : {1.0, 8.0, 64.0, 512.0}) {
    EXPECT_DOUBLE_EQ(analytic::unfused_l_intensity(B, 12, 512, 64, 2), 51.2);
    EXPECT_DOUBLE_EQ(analytic::fused_la_intensity(B, 12, 512, 64, 2), 256.0);
  }
  EXPECT_LT(analytic::unfused_l_intensity(1, 12, 65536, 64, 2), 64.0);
  // The model: the best unfused mapping moves the same bytes per FLOP at any batch (no reuse across B).
  const Accelerator acc = load_hardware("cloud").accel;
  for (std::int64_t n : {512, 4096}) {
    const Evaluated b1 = best_mapping(acc, bert(n, 1), DataflowKind::flex);
    const Evaluated b64 = best_mapping(acc, bert(n, 64), DataflowKind::flex);
    const double i1 = b1.cost.flops / b1.cost.offchip_bytes, i64 = b64.cost.flops / b64.cost.offchip_bytes;
    EXPECT_NEAR(i1 / i64, 1.0, 1e-12) << "N=" << n;
    EXPECT_LT(i1, 64.0);
    EXPECT_NEAR(b64.cost.runtime_s / b1.cost.runtime_s, 64.0, 64 * 1e-2);  // up to the cold start
  }
}

TEST(Analytic, IdealRuntimeIsMacsOverThePeArray) {
  for (const char* hw : {"edge", "cloud"}) {
    const Accelerator acc = load_hardware(hw).accel;
    for (std::int64_t n : {512, 8192}) {
      const AttnProblem p = bert(n);
      const double ideal = analytic::ideal_la_runtime_s(64, 12, double(n), 64, acc.pes(), 940e6);
      for (DataflowKind d : {DataflowKind::naive, DataflowKind::flex, DataflowKind::flat, DataflowKind::flash}) {
        const Evaluated e = best_mapping(acc, p, d);
        ASSERT_TRUE(e.cost.feasible) << hw << " " << name(d);
        EXPECT_DOUBLE_EQ(e.cost.ideal_s, ideal);
        EXPECT_DOUBLE_EQ(e.cost.utilization, ideal / e.cost.runtime_s);
        EXPECT_LE(e.cost.utilization, 1.0) << hw << " " << name(d) << " N=" << n;
        EXPECT_GT(e.cost.utilization, 0.0);
      }
    }
  }
  // FuseMax's flat_validation.csv: ideal_latency of BERT at N = 512 on cloud is 0.41831489... s x 1e-3.
  EXPECT_NEAR(analytic::ideal_la_runtime_s(64, 12, 512, 64, 65536, 940e6), 0.0004183148936170213, 1e-15);
}
