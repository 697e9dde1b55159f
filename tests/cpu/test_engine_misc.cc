// The CPU engine's supporting pieces: scratch that grows linearly in N (never N x N), the automatic
// policy, the naive yardstick (checked against the oracle like the engine) and the SGEMM probe.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <random>
#include <vector>

#include "src/core/validate.h"
#include "src/cpu/gemm.h"
#include "src/cpu/gemm_rate.h"
#include "src/cpu/naive.h"
#include "src/cpu/policy.h"
#include "src/cpu/score.h"
#include "src/cpu/softmax_exp.h"
#include "src/cpu/workspace.h"
#include "tests/cpu/cpu_check.h"
#include "src/check/features.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

/// A GPT-2 shaped problem (B = 1, Hq = 12, D = 64), square N, on 2 threads.
Problem gpt2(std::int64_t n, bool causal) {
  Problem p;
  p.batch = 1, p.hq = 12, p.hkv = 12, p.d = 64, p.nq = n, p.nk = n;
  p.scale = 0.125f;
  if (causal) p.mask.right = 0;
  p.num_threads = 2;
  return p;
}

// Scratch per doubling of N grows by at most 2x (linear), and at N = 16k stays far below one N x N fp32
// matrix, for both dataflows and the backward; the naive yardstick grows 4x per doubling (N^2).
TEST(CpuWorkspace, GrowsLinearlyInN) {
  for (bool causal : {false, true}) {
    for (Dataflow df : {Dataflow::flash, Dataflow::flat, Dataflow::automatic}) {
      std::size_t prev = 0;
      for (std::int64_t n = 1024; n <= 16384; n *= 2) {
        const std::size_t ws = cpu::workspace_bytes(gpt2(n, causal), df);
        EXPECT_GT(ws, 0u);
        if (prev) {
          EXPECT_LE(static_cast<double>(ws), 2.05 * static_cast<double>(prev)) << name(df) << " N=" << n;
          EXPECT_GE(ws, prev) << name(df) << " N=" << n;
        }
        prev = ws;
      }
      EXPECT_LT(static_cast<double>(prev), 0.1 * 16384.0 * 16384.0 * 4.0) << name(df) << ": not linear at 16k";
    }
    std::size_t prev = 0;
    for (std::int64_t n = 1024; n <= 16384; n *= 2) {
      const std::size_t ws = cpu::backward_workspace_bytes(gpt2(n, causal));
      if (prev) EXPECT_LE(static_cast<double>(ws), 2.05 * static_cast<double>(prev)) << "backward N=" << n;
      prev = ws;
    }
    EXPECT_LT(static_cast<double>(prev), 0.1 * 16384.0 * 16384.0 * 4.0) << "backward";
  }
  const double naive_ratio = static_cast<double>(cpu::naive_workspace_bytes(gpt2(8192, false))) /
                             static_cast<double>(cpu::naive_workspace_bytes(gpt2(4096, false)));
  EXPECT_GT(naive_ratio, 3.5) << "the naive yardstick materializes N x N";
}

// FLAT's R keeps its logit tile in the L2 budget, and automatic picks FLAT only where it fits.
TEST(CpuPolicy, FlatTileFitsL2AndAutomaticFollowsTheTable) {
  const std::size_t l2 = cpu::l2_cache_bytes();
  EXPECT_GT(l2, 0u);
  for (std::int64_t n : {256, 1024, 4096, 16384, 65536}) {
    const Problem p = gpt2(n, false);
    const int r = cpu::flat_rows(p, l2);
    EXPECT_EQ(r % cpu::kRowAlign, 0);
    EXPECT_LE(r, cpu::forward_policy(64).flat_max_rows);
    if (r > cpu::kRowAlign)
      EXPECT_LE(4.0 * r * n, cpu::kFlatL2Share * static_cast<double>(l2)) << "N=" << n << " R=" << r;
    const cpu::ForwardPlan plan = cpu::plan_forward(p, Dataflow::automatic);
    const bool flat_fits = 4.0 * cpu::kRowAlign * n <= cpu::kFlatL2Share * static_cast<double>(l2);
    EXPECT_EQ(plan.dataflow == Dataflow::flat, n <= cpu::forward_policy(64).flat_max_nk && flat_fits) << "N=" << n;
    EXPECT_EQ(cpu::plan_forward(p, Dataflow::flash).dataflow, Dataflow::flash);
    EXPECT_EQ(cpu::plan_forward(p, Dataflow::flat).dataflow, Dataflow::flat);
  }
}

// The naive yardstick has forward()'s semantics: checked against the oracle on a few features.
TEST(CpuNaive, MatchesOracle) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::f32, DType::bf16})
    for (const char* f : {"plain", "causal_br_tall", "window_causal_tl", "softcap", "gqa", "varlen", "strided"}) {
      const Case c = feature_case(feature(f), dt);
      SCOPED_TRACE(c.name());
      CaseTensors t = make_case(c, s.rng);
      const ForwardOracle o = oracle_forward(t);
      t.out.poison();
      t.lse.poison();
      const ValidatedForward v = validate_forward(t.forward_args(), c.options);
      cpu::naive_forward(v.problem, v.tensors);
      const Verdict vo = judge_forward(t.out, o, dt);
      EXPECT_TRUE(vo.pass) << vo.detail();
      if (dt == DType::f32) EXPECT_LE(vo.rel_err, 1e-5) << vo.detail();
      const Verdict vl = judge_lse(t.lse, o.lse, 1e-5);
      EXPECT_TRUE(vl.pass) << vl.detail();
    }
}

TEST(CpuGemmRate, MeasuresAPlausibleRate) {
  const double g = cpu::sgemm_gflops(256, 1);
  EXPECT_TRUE(std::isfinite(g));
  EXPECT_GT(g, 0.5) << "one core should do more than 0.5 GFLOP/s of SGEMM";
  EXPECT_LT(g, 1e5);
  EXPECT_FALSE(cpu::sgemm_library().empty());
  EXPECT_THROW(cpu::sgemm_gflops(0, 1), Error);
  EXPECT_THROW(cpu::sgemm_gflops(64, -1), Error);
}

// The bf16 GEMM ceiling (oneDNN at run time): a plausible rate where a oneDNN loads, else an Error that names it;
// bad sizes are refused either way.
TEST(CpuGemmRate, Bf16GemmRateOrAClearError) {
  EXPECT_THROW(cpu::bf16_gemm_gflops(0, 1), Error);
  EXPECT_THROW(cpu::bf16_gemm_gflops(64, -1), Error);
  if (cpu::bf16_gemm_library().empty()) {
    try {
      (void)cpu::bf16_gemm_gflops(64, 1);
      ADD_FAILURE() << "no Error without a oneDNN";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), Error::Kind::unsupported);
      EXPECT_NE(std::string(e.what()).find("oneDNN"), std::string::npos) << e.what();
    }
    GTEST_SKIP() << "no oneDNN loads here: the rate itself is not measured";
  }
  const double g = cpu::bf16_gemm_gflops(256, 1);
  EXPECT_TRUE(std::isfinite(g));
  EXPECT_GT(g, 0.5) << cpu::bf16_gemm_library();
  EXPECT_LT(g, 1e6);
  EXPECT_NE(cpu::bf16_gemm_library().find("oneDNN "), std::string::npos) << cpu::bf16_gemm_library();
}

// The CPU's vector math of the variant hooks: lane l of keys(j) is key j + l, and tanh/max agree with the
// scalar math the GPU uses, lane by lane.
TEST(CpuScore, VecMathMatchesFloatMath) {
  const cpu::simd::vf k = cpu::VecMath::keys(37);
  for (int l = 0; l < cpu::simd::kWidth; ++l) EXPECT_EQ(k[l], 37.f + l);
  cpu::simd::vf x;
  for (int l = 0; l < cpu::simd::kWidth; ++l) x[l] = -8.f + 1.1f * l;
  const cpu::simd::vf t = cpu::VecMath::tanh(x), m = cpu::VecMath::max(x, cpu::simd::splat(0.5f));
  for (int l = 0; l < cpu::simd::kWidth; ++l) {
    EXPECT_NEAR(t[l], FloatMath::tanh(x[l]), 2e-7) << "lane " << l;
    EXPECT_EQ(m[l], FloatMath::max(x[l], 0.5f)) << "lane " << l;
  }
  // abs, copysign (the sign bit, -0 and -inf included), exp, div, and softcap's kept value built from them.
  x[0] = -0.f, x[1] = -std::numeric_limits<float>::infinity(), x[2] = 0.f;
  const cpu::simd::vf one = cpu::simd::splat(1.f);
  const cpu::simd::vf a = cpu::VecMath::abs(x), cs = cpu::VecMath::copysign(one, x), e = cpu::VecMath::exp(-a),
                      d = cpu::VecMath::div(x, one + a);
  const VariantData v = make_variant_data(VariantArgs{.softcap = 3.f}, 0.5f, 1.f);
  const cpu::simd::vf kept = carry_score<SoftcapScore, cpu::VecMath>(x, v, {});
  const cpu::simd::vf xs = score_of_carry<SoftcapScore, cpu::VecMath>(kept, v), ds = SoftcapScore::dscore<cpu::VecMath>(kept, v);
  for (int l = 0; l < cpu::simd::kWidth; ++l) {
    EXPECT_EQ(a[l], FloatMath::abs(x[l])) << "lane " << l;
    EXPECT_EQ(std::signbit(cs[l]), std::signbit(FloatMath::copysign(1.f, x[l]))) << "lane " << l;
    EXPECT_EQ(cs[l], FloatMath::copysign(1.f, x[l])) << "lane " << l;
    EXPECT_NEAR(e[l], FloatMath::exp(-a[l]), 3e-7 * FloatMath::exp(-a[l])) << "lane " << l;
    if (l != 1) EXPECT_NEAR(d[l], FloatMath::div(x[l], 1.f + a[l]), 1e-7) << "lane " << l;
    const float kf = carry_score<SoftcapScore, FloatMath>(x[l], v, {});
    EXPECT_NEAR(kept[l], kf, 3e-7 * std::abs(kf)) << "lane " << l;
    EXPECT_EQ(std::signbit(kept[l]), std::signbit(kf)) << "lane " << l;
    EXPECT_NEAR(xs[l], (score_of_carry<SoftcapScore, FloatMath>(kf, v)), 1e-6) << "lane " << l;
    EXPECT_NEAR(ds[l], SoftcapScore::dscore<FloatMath>(kf, v), 1e-6 * SoftcapScore::dscore<FloatMath>(kf, v))
        << "lane " << l;
  }
}


// The softmax's exponent as the engine compiles it (cpu::exp_nonpos_into: simd::exp_nonpos under the engine's
// flags): e^0 is exactly 1 (a row with one visible key has P = 1, as the fp64 oracle has; a polynomial an ulp off
// there failed the rule with the naive yardstick exact), -inf gives +0, and elsewhere on [-87, 0] the error stays
// within the rounding of t = x log2(e) (about 1e-7 |x| relative) plus 2 ulp of e^x (against std::exp in fp64).
TEST(CpuScore, ExpNonposIsExactAtZeroAndCloseElsewhere) {
  const float ends[4] = {0.f, -0.f, -std::numeric_limits<float>::infinity(), -1e-30f};
  float e0[4] = {-1.f, -1.f, -1.f, -1.f};
  const bool avx512 = cpu::exp_nonpos_into(ends, e0, 4);
  EXPECT_EQ(e0[0], 1.f) << "AVX-512 form: " << avx512;
  EXPECT_EQ(e0[1], 1.f);
  EXPECT_EQ(e0[2], 0.f);
  EXPECT_FALSE(std::signbit(e0[2]));
  EXPECT_EQ(e0[3], 1.f);
  std::mt19937 rng(check::fresh_seed());
  std::uniform_real_distribution<float> wide(-87.f, 0.f), near0(-2.f, 0.f);
  const int n = 200000;
  std::vector<float> x(n), e(n, -1.f);
  for (int i = 0; i < n; ++i) x[i] = (i % 2 ? wide : near0)(rng);
  cpu::exp_nonpos_into(x.data(), e.data(), n - 3);  // a tail of 13 lanes; the last 3 stay untouched
  double worst = 0;
  for (int i = 0; i < n - 3; ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    const double ulp = std::nextafter(static_cast<float>(want), 2.f) - static_cast<float>(want);
    const double err = std::abs(e[i] - want), allowed = want * std::abs(x[i]) * 1e-7 + 2 * ulp;
    worst = std::max(worst, err / allowed);
    ASSERT_LE(err, allowed) << "x = " << x[i] << " got " << e[i] << " want " << want << " (AVX-512 form: " << avx512
                            << ")";
  }
  for (int i = n - 3; i < n; ++i) EXPECT_EQ(e[i], -1.f) << "written past n";
  EXPECT_GT(worst, 0.0) << "every value exact: the comparison would prove nothing";
}

}  // namespace
