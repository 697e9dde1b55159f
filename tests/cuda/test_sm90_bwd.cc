// The sm90 family's backward (wgmma, src/cuda/sm90/bwd_kernel.cuh) on Hopper: routing (the Report names
// the kernel that ran: sm90 for its head dims unless FLATATTN_CUDA_SM90=0, sm80 otherwise), and both
// families on the same inputs (out and LSE from the fp64 oracle, so the forward's family plays no part),
// each judged against the oracle's gradients with the docs/design.md rule. Skipped where the sm90 family is
// not built or the GPU is not an sm_90; the CudaBackward tests run whichever family dispatch picks.
#include <gtest/gtest.h>

#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "src/cuda/dispatch.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

bool sm90_runs() {
  if (!gpu_present()) return false;
  const ScopedSm90 policy(nullptr);  // whether the sm_90a code loads here, whatever FLATATTN_CUDA_SM90 says
  return cuda::path_info(0, DType::bf16).sm90_flash;
}

#define REQUIRE_SM90()                                                                                        \
  if (!sm90_runs()) GTEST_SKIP() << "no sm_90 GPU or the sm90 family is not built"

/// The backward's features on the sm90 head dims (and zero-padded ones that map to them): ragged and
/// odd lengths (one query block, one key block, several), Nq != Nk, causal in both alignments, windows
/// with fully masked rows, softcap, large logits, negative scale, GQA/MQA on strided views, varlen
/// with empty and length-1 sequences, the deterministic order.
std::vector<Case> feature_cases(DType dt) {
  std::vector<Case> v;
  for (std::int64_t d : {64, 128}) {
    for (std::int64_t n : {1, 17, 129, 300}) v.push_back(small_case(dt, n, n, d));
    for (auto [nq, nk] : {std::pair{100, 37}, {37, 300}, {200, 20}, {260, 390}}) {
      Case c = small_case(dt, nq, nk, d);
      c.options.causal = true;
      v.push_back(c);
      c.options.causal_align = CausalAlign::top_left;
      v.push_back(c);
    }
    for (const Case& c : feature_mix(dt, d, 300, 250)) v.push_back(c);
    Case c = v.back();  // the varlen batch, causal and deterministic
    c.options.causal = true;
    c.options.deterministic = true;
    v.push_back(c);
  }
  for (std::int64_t d : {40, 120}) {  // zero-padded to the d64 / d128 kernels
    Case c = small_case(dt, 150, 140, d);
    c.options.causal = true;
    v.push_back(c);
  }
  return v;
}

/// The kernel dispatch picks for the case under FLATATTN_CUDA_SM90 = `mode` (nullptr: the policy).
std::string kernel_for(const Case& c, const char* mode, std::mt19937_64& rng) {
  const ScopedSm90 m(mode);
  CaseTensors t = make_case(c, rng, /*with_backward=*/true);
  run_on_gpu(t);
  return run_backward_on_gpu(t).kernel;
}

}  // namespace

// Hopper runs the sm90 backward for the kernel head dims 64 and 128 (both dtypes, softcap, deterministic,
// zero-padded D), the sm80 family for the other head dims, and the sm80 family for everything under
// FLATATTN_CUDA_SM90=0 ("1" changes nothing for the backward).
TEST(CudaSm90Backward, Routes) {
  REQUIRE_SM90();
  std::mt19937_64 rng(fresh_seed());
  for (DType dt : {DType::f16, DType::bf16}) {
    for (std::int64_t d : {64, 128, 40, 96}) {
      for (bool softcap : {false, true}) {
        Case c = small_case(dt, 70, 90, d);
        if (softcap) c.options.softcap = 20.f;
        c.options.deterministic = d == 128;
        const std::string k = kernel_for(c, nullptr, rng);
        // The sm90 family has the kernel head dims 64 and 128 (D = 40 pads to 64; D = 96 has its own
        // sm80 kernel in a full build, and pads to 128 where 96 is not built).
        const bool sm90_d = k.find("_d64") != std::string::npos || k.find("_d128") != std::string::npos;
        if (d != 96) EXPECT_TRUE(sm90_d) << k;
        EXPECT_EQ(k.rfind(sm90_d ? "bwd_sm90_" : "bwd_sm80_", 0), 0u) << c.name() << ": " << k;
        EXPECT_EQ(k.find("_softcap") != std::string::npos, softcap) << k;
        EXPECT_EQ(k.find("deterministic") != std::string::npos, d == 128) << k;
        const std::string k80 = kernel_for(c, "0", rng);
        EXPECT_EQ(k80.rfind("bwd_sm80_", 0), 0u) << c.name() << " under FLATATTN_CUDA_SM90=0: " << k80;
        const std::string k1 = kernel_for(c, "1", rng);
        EXPECT_EQ(k1, k) << c.name() << " under FLATATTN_CUDA_SM90=1";
      }
    }
  }
}

// Both families on the same inputs (oracle out and LSE), each judged against the oracle gradients.
TEST(CudaSm90Backward, BothFamiliesAgainstOracle) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("CudaSm90Backward.BothFamiliesAgainstOracle");
  std::mt19937_64 rng(seed);
  // f16 and bf16 take turns over the feature list (the two dtypes differ only in the wgmma type and the
  // packing; the list's runtime stays a few seconds of oracle work per family).
  const std::vector<Case> f16 = feature_cases(DType::f16), bf16 = feature_cases(DType::bf16);
  for (std::size_t i = 0; i < f16.size(); ++i) {
    const Case& c = i % 2 == 0 ? f16[i] : bf16[i];
    CaseTensors t90 = make_case(c, rng, /*with_backward=*/true);
    CaseTensors t80 = t90;  // the same inputs, poisoned gradients
    {
      const ScopedSm90 policy(nullptr);
      check_backward(t90, seed, "sm90", FwdSource::oracle);
    }
    {
      const ScopedSm90 off("0");
      check_backward(t80, seed, "sm80", FwdSource::oracle);
    }
    if (::testing::Test::HasFailure()) return;  // one replayable failure is enough
  }
}

// Random shapes (lengths 1..700, D in {64, 128}, masks, GQA, softcap) on the sm90 backward after the
// GPU forward (the training path).
TEST(CudaSm90Backward, RandomSweep) {
  REQUIRE_SM90();
  const ScopedSm90 policy(nullptr);
  const std::uint64_t seed = seed_for("CudaSm90Backward.RandomSweep");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> len(1, 700), coin(0, 1), win(-1, 200);
  for (int i = 0; i < 24; ++i) {
    Case c = small_case(coin(rng) ? DType::bf16 : DType::f16, len(rng), len(rng), coin(rng) ? 128 : 64);
    c.batch = 1 + coin(rng);
    c.hkv = 1 + coin(rng);
    c.hq = c.hkv * (1 + 2 * coin(rng));
    c.options.causal = coin(rng) != 0;
    c.options.causal_align = coin(rng) ? CausalAlign::bottom_right : CausalAlign::top_left;
    if (i % 4 == 3) c.options.window = {win(rng), c.options.causal ? 0 : win(rng)};
    if (i % 5 == 4) c.options.softcap = 25.f;
    c.options.deterministic = i % 6 == 5;
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    check_backward(t, seed, "sm90 sweep");
    if (::testing::Test::HasFailure()) return;
  }
}
