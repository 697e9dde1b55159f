// The sm90 family (wgmma Flash forward, sm_90a): its warpgroup products against a host product, then
// the whole kernel against the fp64 oracle on the features the forward has (causal in both alignments,
// windows, softcap, GQA/MQA, varlen, strides, Nq != Nk, ragged and odd lengths, padded head dims,
// large logits, fully masked rows, LSE), checking that the sm90 kernel is the one that ran. Skipped
// where the family is not built or the GPU is not an sm_90 (the other tests cover the sm80 family).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "src/core/half.h"
#include "src/cuda/dispatch.h"
#include "src/cuda/policy/tile_size.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"
#include "src/check/yardstick.h"
#include "tests/cuda/device_case.h"
#include "tests/cuda/wgmma_unit.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

bool sm90_runs() {
  if (!gpu_present()) return false;
  return cuda::path_info(0, DType::bf16).sm90_flash;
}

#define REQUIRE_SM90()                                                                                        \
  if (!sm90_runs()) GTEST_SKIP() << "no sm_90 GPU, the sm90 family is not built, or FLATATTN_CUDA_SM90=0"

/// check_case (the oracle, the correctness rule of docs/design.md) and which family ran.
void check_sm90(CaseTensors& t, std::uint64_t seed, const std::string& what, bool expect_sm90 = true) {
  const Report r = check_case(t, seed, what.c_str());
  EXPECT_EQ(r.kernel.find("sm90") != std::string::npos, expect_sm90)
      << what << " [" << t.c.name() << "] kernel " << r.kernel << " (seed " << seed << ", replay with FLATATTN_SEED)";
}

/// small_case on the Flash dataflow (the only one with an sm90 kernel).
Case base(DType dt, std::int64_t nq, std::int64_t nk, std::int64_t d) {
  Case c = small_case(dt, nq, nk, d);
  c.options.dataflow = Dataflow::flash;
  return c;
}

std::vector<Case> feature_cases(DType dt) {
  std::vector<Case> v;
  for (std::int64_t d : {64, 128}) {
    for (std::int64_t n : {1, 17, 129, 1025}) v.push_back(base(dt, n, n, d));
    for (bool causal : {false, true}) {
      for (auto [nq, nk] : {std::pair{100, 37}, {37, 300}, {200, 20}, {513, 700}, {700, 513}}) {
        if (!causal && nq > 300) continue;
        Case c = base(dt, nq, nk, d);
        c.options.causal = causal;
        v.push_back(c);
        if (causal) {
          c.options.causal_align = CausalAlign::top_left;
          v.push_back(c);
        }
      }
    }
    for (Case c : feature_mix(dt, d, 400, 350)) {
      c.options.dataflow = Dataflow::flash;
      v.push_back(c);
    }
    Case c = v.back();  // the varlen batch, causal on strided views
    c.options.causal = true;
    c.strided = true;
    v.push_back(c);
  }
  for (std::int64_t d : {40, 56, 104, 120}) v.push_back(base(dt, 150, 170, d));  // padded up to 64 / 128
  return v;
}

}  // namespace

TEST(CudaSm90, WgmmaUnitGemm) {
#ifndef FLATATTN_TEST_SM90
  GTEST_SKIP() << "the sm90 family is not built (FLATATTN_CUDA_ARCHS without 90)";
#else
  {
    const ScopedSm90 policy(nullptr);  // whether the sm_90a code loads here, whatever FLATATTN_CUDA_SM90 says
    if (!sm90_runs()) GTEST_SKIP() << "no sm_90 GPU, or its sm_90a code does not load (CUDA_FORCE_PTX_JIT)";
  }
  const std::uint64_t seed = seed_for("WgmmaUnitGemm");
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto [d, n] : {std::pair{64, 128}, {128, 128}, {128, 64}, {256, 64}}) {
    std::vector<std::uint16_t> a(64 * d), b(n * d), v(n * d);
    std::vector<float> p(64 * n);
    for (auto& x : a) x = float_to_bf16(nd(rng));
    for (auto& x : b) x = float_to_bf16(nd(rng));
    for (auto& x : v) x = float_to_bf16(nd(rng));
    for (auto& x : p) x = bf16_to_float(float_to_bf16(std::abs(nd(rng))));
    void *da, *db, *dv, *dp, *ds, *dout;
    ASSERT_EQ(cudaMalloc(&da, a.size() * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&db, b.size() * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dv, v.size() * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dp, p.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&ds, 64 * n * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dout, 64 * d * 4), cudaSuccess);
    cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dv, v.data(), v.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dp, p.data(), p.size() * 4, cudaMemcpyHostToDevice);
    cudaMemset(ds, 0xff, 64 * n * 4);  // NaN poison
    cudaMemset(dout, 0xff, 64 * d * 4);
    const WgmmaUnitBuffers buf{static_cast<const std::uint16_t*>(da), static_cast<const std::uint16_t*>(db),
                               static_cast<const std::uint16_t*>(dv), static_cast<const float*>(dp),
                               static_cast<float*>(ds), static_cast<float*>(dout)};
    const std::string err = run_wgmma_unit(d, n, buf);
    EXPECT_EQ(err, "") << "d " << d << " n " << n;
    std::vector<float> s(64 * n), o(64 * d);
    cudaMemcpy(s.data(), ds, s.size() * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(o.data(), dout, o.size() * 4, cudaMemcpyDeviceToHost);
    for (void* x : {da, db, dv, dp, ds, dout}) cudaFree(x);
    // fp32 accumulation of exact bf16 products: error <= ~k * 2^-24 * sum |a b|.
    int bad = 0;
    for (int i = 0; i < 64; ++i) {
      for (int j = 0; j < n; ++j) {
        double ref = 0, mag = 0;
        for (int k = 0; k < d; ++k) {
          const double t = double(bf16_to_float(a[i * d + k])) * bf16_to_float(b[j * d + k]);
          ref += t;
          mag += std::abs(t);
        }
        if (!(std::abs(s[i * n + j] - ref) <= 1e-5 * mag + 1e-6) && bad++ < 5)
          ADD_FAILURE() << "S d " << d << " n " << n << " (" << i << ", " << j << "): " << s[i * n + j] << " vs " << ref;
      }
      for (int j = 0; j < d; ++j) {
        double ref = 0, mag = 0;
        for (int k = 0; k < n; ++k) {
          const double t = double(p[i * n + k]) * bf16_to_float(v[k * d + j]);
          ref += t;
          mag += std::abs(t);
        }
        if (!(std::abs(o[i * d + j] - ref) <= 1e-5 * mag + 1e-6) && bad++ < 5)
          ADD_FAILURE() << "O d " << d << " n " << n << " (" << i << ", " << j << "): " << o[i * d + j] << " vs " << ref;
      }
    }
    EXPECT_EQ(bad, 0) << "d " << d << " n " << n << " (seed " << seed << ")";
  }
#endif
}

// The kernel on short and odd shapes too.
TEST(CudaSm90, FeaturesAgainstOracle) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("Sm90FeaturesAgainstOracle");
  std::mt19937_64 rng(seed);
  for (DType dt : {DType::bf16, DType::f16}) {
    int i = 0;
    for (const Case& c : feature_cases(dt)) {
      if (dt == DType::f16 && i++ % 3 != 0) continue;  // f16: every third case (the runtime of the oracle)
      CaseTensors t = make_case(c, rng);
      check_sm90(t, seed, "features");
    }
  }
}

TEST(CudaSm90, RandomSweep) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("Sm90RandomSweep");
  std::mt19937_64 rng(seed);
  int ran = 0;
  constexpr int kCases = 30;
  for (int i = 0; i < kCases; ++i) {
    const DType dt = i % 2 ? DType::bf16 : DType::f16;
    Case c = random_case(rng, dt, 400);
    c.options.dataflow = Dataflow::flash;
    CaseTensors t = make_case(c, rng);
    const Report r = run_on_gpu(t);
    const bool sm90 = r.kernel.find("sm90") != std::string::npos;
    ran += sm90;
    const ForwardOracle o = oracle_forward(t);
    const Verdict v = judge_forward(t.out, o, dt);
    EXPECT_TRUE(v.pass) << "random #" << i << " [" << c.name() << "] kernel " << r.kernel << " (seed " << seed
                        << "): " << v.detail();
    if (::testing::Test::HasFailure()) return;
  }
  std::cout << "[sm90] " << ran << " of " << kCases << " random cases ran the sm90 family\n";
  EXPECT_GT(ran, 0) << "no random case reached the sm90 family";
}

// FLATATTN_CUDA_SM90=0 sends the same request to the sm80 family (comparisons on one GPU); FLAT and the
// head dims without an sm90 instance never run the sm90 family.
TEST(CudaSm90, SwitchAndFallbacks) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("Sm90SwitchAndFallbacks");
  std::mt19937_64 rng(seed);
  Case c = base(DType::bf16, 190, 230, 128);
  c.options.causal = true;
  CaseTensors t = make_case(c, rng);
  check_sm90(t, seed, "sm90");
  {
    const ScopedSm90 off("0");
    t = make_case(c, rng);
    check_sm90(t, seed, "forced sm80", false);
  }
  for (std::int64_t d : {32, 96, 256}) {
    t = make_case(base(DType::bf16, 70, 90, d), rng);
    const Report r = check_case(t, seed, "no sm90 instance");
    // A build without this D's instances (FLATATTN_HDIMS) pads it up (src/cuda/staging.h): it then runs the sm90
    // family exactly when it is padded to a head dim that family has (64, 128).
    const bool padded_to_sm90 = r.kernel.find("zero-padded") != std::string::npos &&
                                (r.kernel.find("_d64") != std::string::npos || r.kernel.find("_d128") != std::string::npos);
    // D = 256 has the sm90 family's warp-specialized kernel only, run when FLATATTN_CUDA_SM90_WS forces it
    // (or its planner row picks it): the kernel name then says "_ws".
    const bool ws = r.kernel.find("_ws") != std::string::npos;
    EXPECT_EQ(r.kernel.find("sm90") != std::string::npos, padded_to_sm90 || ws)
        << "D " << d << ": kernel " << r.kernel << " (seed " << seed << ", replay with FLATATTN_SEED)";
  }
  c = base(DType::bf16, 64, 100, 64);
  c.options.dataflow = Dataflow::flat;
  t = make_case(c, rng);
  check_sm90(t, seed, "flat", false);
}

// The default policy: the sm90 family serves D = 64/128 at every length; the kernel names tell (the
// numbers are checked by the tests above).
TEST(CudaSm90, DefaultPolicyRoutes) {
  REQUIRE_SM90();
  const ScopedSm90 policy(nullptr);
  std::mt19937_64 rng(fresh_seed());
  for (auto [d, n] : {std::pair{128, 200}, {64, 200}, {64, 4096}, {128, 1}}) {
    Case c = base(DType::bf16, n, n, d);
    c.batch = 1;
    c.hq = 1;
    CaseTensors t = make_case(c, rng);
    const Report r = run_on_gpu(t);
    EXPECT_NE(r.kernel.find("sm90"), std::string::npos) << "D " << d << " N " << n << ": " << r.kernel;
  }
}
