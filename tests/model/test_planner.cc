// The GPU planner: feasible choices, FLAT's shared-memory limit, errors, and the kernel model's
// basic monotonicities (more work takes longer; causal about halves long sequences; wave quantization).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "flatattn/error.h"
#include "src/model/planner.h"
#include "src/check/case.h"

using namespace flatattn;
using namespace flatattn::model;

namespace {

AttnShape shape(std::int64_t b, std::int64_t n, std::int64_t hq, std::int64_t d, bool causal = false,
                std::int64_t hkv = 0) {
  AttnShape s;
  s.batch = b;
  s.nq = s.nk = n;
  s.hq = hq;
  s.hkv = hkv ? hkv : hq;
  s.d = d;
  s.causal = causal;
  return s;
}

KernelVariant flat_variant(int r) {
  KernelVariant v;
  v.name = "flat_r" + std::to_string(r);
  v.dataflow = Dataflow::flat;
  v.block_m = r;
  v.block_n = 64;
  return v;
}

}  // namespace

TEST(Planner, ChoosesTheFastestFeasibleVariant) {
  const Gpu gpu = load_hardware("h100").gpu;
  const std::vector<KernelVariant> vs = load_kernel_variants("default");
  for (std::int64_t d : {64, 128, 256})
    for (std::int64_t n : {512, 4096, 16384})
      for (bool causal : {false, true}) {
        const Plan p = plan(gpu, shape(16384 / n, n, 2048 / d, d, causal), vs);
        ASSERT_TRUE(p.chosen.feasible);
        EXPECT_TRUE(p.chosen.variant.head_dim == 0 || p.chosen.variant.head_dim == d);
        EXPECT_GT(p.chosen.time_s, 0);
        const auto built_for_d = std::count_if(vs.begin(), vs.end(), [&](const KernelVariant& v) {
          return v.head_dim == 0 || v.head_dim == d;
        });
        EXPECT_EQ(std::int64_t(p.candidates.size()), std::int64_t(built_for_d));
        for (std::size_t i = 1; i < p.candidates.size(); ++i) {
          if (!p.candidates[i].feasible) continue;
          EXPECT_TRUE(p.candidates[i - 1].feasible);
          EXPECT_LE(p.candidates[i - 1].time_s, p.candidates[i].time_s);
        }
        EXPECT_EQ(p.chosen.variant.name, p.candidates.front().variant.name);
        // A forward pass cannot beat the tensor peak.
        EXPECT_LT(p.chosen.tflops(), gpu.tensor_rate(DType::bf16) * 1e-12);
      }
}

TEST(Planner, FlatLogitBlockMustFitSharedMemory) {
  const Gpu gpu = load_hardware("h100").gpu;
  // R = 64 rows x Nk fp32: 64 * 512 * 4 = 128 KiB fits the 227 KiB per CTA, 64 * 4096 * 4 = 1 MiB does not.
  const KernelPrediction ok = predict(gpu, shape(4, 512, 16, 128), flat_variant(64));
  EXPECT_TRUE(ok.feasible) << ok.reason;
  EXPECT_LE(ok.smem_bytes, gpu.smem_per_cta);
  const KernelPrediction too_big = predict(gpu, shape(4, 4096, 16, 128), flat_variant(64));
  EXPECT_FALSE(too_big.feasible);
  EXPECT_NE(too_big.reason.find("FLAT logit block"), std::string::npos) << too_big.reason;
  EXPECT_NE(too_big.reason.find("shared memory"), std::string::npos) << too_big.reason;
  // The largest Nk a variant accepts shrinks with R.
  auto max_nk = [&](int r) {
    std::int64_t best = 0;
    for (std::int64_t n = 64; n <= 65536; n += 64)
      if (predict(gpu, shape(1, n, 1, 128), flat_variant(r)).feasible) best = n;
    return best;
  };
  EXPECT_GT(max_nk(16), max_nk(64));
  EXPECT_GE(max_nk(16), 2048);
  // The built kernels keep the rows in registers instead: feasible up to their row capacity.
  KernelVariant regs = flat_variant(64);
  regs.cap_n = 256;
  EXPECT_TRUE(predict(gpu, shape(4, 256, 16, 128), regs).feasible);
  const KernelPrediction long_row = predict(gpu, shape(4, 320, 16, 128), regs);
  EXPECT_FALSE(long_row.feasible);
  EXPECT_NE(long_row.reason.find("registers"), std::string::npos) << long_row.reason;
  // With only FLAT variants and a long sequence there is nothing to run: a clear error listing reasons.
  const std::vector<KernelVariant> only_flat{flat_variant(16), flat_variant(64)};
  try {
    plan(gpu, shape(1, 65536, 8, 128), only_flat);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("flat_r16"), std::string::npos) << m;
    EXPECT_NE(m.find("fix:"), std::string::npos) << m;
  }
}

TEST(Planner, RestrictingTheDataflow) {
  const Gpu gpu = load_hardware("a100").gpu;
  const std::vector<KernelVariant> vs = load_kernel_variants("default");
  const Plan flash = plan(gpu, shape(8, 128, 16, 64), vs, Dataflow::flash);
  EXPECT_EQ(flash.chosen.variant.dataflow, Dataflow::flash);
  for (const KernelPrediction& c : flash.candidates) EXPECT_EQ(c.variant.dataflow, Dataflow::flash);
  const Plan flat = plan(gpu, shape(8, 128, 16, 64), vs, Dataflow::flat);
  EXPECT_EQ(flat.chosen.variant.dataflow, Dataflow::flat);
  // The built FLAT kernel holds rows of at most 128 keys at D = 64: nothing FLAT runs N = 1024.
  EXPECT_THROW(plan(gpu, shape(8, 1024, 16, 64), vs, Dataflow::flat), Error);
  EXPECT_EQ(plan(gpu, shape(8, 1024, 16, 64), vs).chosen.variant.dataflow, Dataflow::flash);
}

TEST(Planner, KernelModelMonotonicities) {
  const Gpu gpu = load_hardware("h100").gpu;
  KernelVariant v;
  v.name = "flash_128x64";
  const std::uint64_t seed = flatattn::check::fresh_seed();
  SCOPED_TRACE("FLATATTN_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 20; ++i) {
    const std::int64_t b = 1 + rng() % 8, n = 64 * (1 + rng() % 64), h = 1 + rng() % 32;
    const double t = predict(gpu, shape(b, n, h, 128), v).time_s;
    // Never faster with more work (equal while the extra CTAs fit in the same wave).
    EXPECT_LE(t, predict(gpu, shape(b + 1, n, h, 128), v).time_s);
    EXPECT_LE(t, predict(gpu, shape(b, n + 256, h, 128), v).time_s);
    EXPECT_LE(t, predict(gpu, shape(b, n, h + 1, 128), v).time_s);
    EXPECT_LT(t, predict(gpu, shape(8 * b, 2 * n, h, 128), v).time_s);
  }
  // Causal skips the upper triangle: about half the time at long N, more than half at short N.
  const double full = predict(gpu, shape(1, 16384, 16, 128), v).time_s;
  const double causal = predict(gpu, shape(1, 16384, 16, 128, true), v).time_s;
  EXPECT_GT(causal, 0.45 * full);
  EXPECT_LT(causal, 0.62 * full);
  EXPECT_NEAR(shape(1, 16384, 16, 128, true).flops() / shape(1, 16384, 16, 128).flops(), 0.5, 1e-3);
  // Wave quantization: one CTA more than a full wave (SMs x CTAs per SM) costs a whole extra CTA time.
  const int per_sm = predict(gpu, shape(1, 128, 1, 128), v).ctas_per_sm;
  const std::int64_t wave = std::int64_t(gpu.sms) * per_sm;
  const KernelPrediction full_wave = predict(gpu, shape(1, 128, wave, 128), v);
  EXPECT_EQ(full_wave.ctas, wave);
  EXPECT_DOUBLE_EQ(full_wave.waves, 1.0);
  const KernelPrediction one_more = predict(gpu, shape(1, 128, wave + 1, 128), v);
  EXPECT_GT(one_more.schedule_s, (1.0 + 0.9 / per_sm) * full_wave.schedule_s);
}

// A warp-specialized kernel's producer warps and launch registers decide its occupancy: the sm90_ws kernel
// (policy/ws_policy.h: 8 computing + 4 producer warps, 64,512 registers) fits one CTA per SM where the same
// tiles described without them would fit two; bad values are infeasible, not silently ignored.
TEST(Planner, ProducerWarpsAndCtaRegistersBoundOccupancy) {
  const Gpu gpu = load_hardware("h100").gpu;
  KernelVariant v;
  v.name = "ws_128x128";
  v.block_m = 128;
  v.block_n = 128;
  v.warps = 8;
  v.stages = 3;
  v.path = "sm90_ws";
  const AttnShape s = shape(4, 4096, 32, 64);
  const KernelPrediction free = predict(gpu, s, v);
  ASSERT_TRUE(free.feasible) << free.reason;
  EXPECT_EQ(free.ctas_per_sm, 2);
  v.producer_warps = 4;
  v.cta_regs = 24 * 128 + 240 * 256;
  const KernelPrediction held = predict(gpu, s, v);
  ASSERT_TRUE(held.feasible) << held.reason;
  EXPECT_EQ(held.ctas_per_sm, 1);
  EXPECT_GT(held.time_s, free.time_s);
  v.producer_warps = 25;  // 33 warps
  EXPECT_FALSE(predict(gpu, s, v).feasible);
  v.producer_warps = 4;
  v.cta_regs = 65537;  // more than an SM has
  EXPECT_FALSE(predict(gpu, s, v).feasible);
}

TEST(Planner, GqaSharesKeyValueTraffic) {
  const Gpu gpu = load_hardware("h100").gpu;
  KernelVariant v;
  v.name = "flash_128x64";
  const KernelPrediction mha = predict(gpu, shape(2, 8192, 32, 128), v);
  const KernelPrediction gqa = predict(gpu, shape(2, 8192, 32, 128, false, 8), v);
  EXPECT_LT(gqa.dram_bytes, mha.dram_bytes);
  EXPECT_EQ(gqa.flops, mha.flops);
}

TEST(Planner, DtypesAndPresetsPerDevice) {
  const Hardware t4 = gpu_preset_for(7, 5, "Tesla T4");
  EXPECT_EQ(t4.name, "t4");
  KernelVariant v;
  v.name = "flash";
  AttnShape s = shape(1, 1024, 8, 64);
  EXPECT_THROW(predict(t4.gpu, s, v), Error);  // Turing has no bf16 tensor cores
  s.dtype = DType::f16;
  EXPECT_TRUE(predict(t4.gpu, s, v).feasible);
  EXPECT_EQ(gpu_preset_for(9, 0, "NVIDIA H200", 132).name, "h200");
  EXPECT_EQ(gpu_preset_for(9, 0, "NVIDIA H100 80GB HBM3", 114, 200000).gpu.sms, 114);
  EXPECT_EQ(gpu_preset_for(8, 6, "RTX 3090").name, "a100");
  EXPECT_THROW(gpu_preset_for(6, 1, "GTX 1080"), Error);
  // Invalid shapes name the field.
  AttnShape bad = shape(1, 128, 6, 64, false, 4);
  try {
    predict(load_hardware("h100").gpu, bad, v);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "hkv");
  }
  // Unknown calibration path.
  v.path = "sm100";
  EXPECT_THROW(predict(load_hardware("h100").gpu, shape(1, 128, 1, 64), v), Error);
}

TEST(Planner, MeasuredCeilingsOverridePublishedRates) {
  const Gpu pub = load_hardware("h100").gpu, meas = load_hardware("h100-measured").gpu;
  EXPECT_EQ(meas.sms, pub.sms);
  EXPECT_DOUBLE_EQ(meas.tensor_rate(DType::bf16), 787e12);
  EXPECT_DOUBLE_EQ(meas.hbm_bw, 3020e9);
  // Same absolute main-loop rate: the efficiencies were rescaled with the ceiling.
  EXPECT_NEAR(meas.tensor_rate(DType::bf16) * meas.path("sm80").mma_efficiency,
              pub.tensor_rate(DType::bf16) * pub.path("sm80").mma_efficiency, 0.01 * pub.tensor_rate(DType::bf16));
  // Overlap etc. come from the base file.
  EXPECT_DOUBLE_EQ(meas.path("sm80").overlap, pub.path("sm80").overlap);
}
