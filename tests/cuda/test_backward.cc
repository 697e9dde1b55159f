// The CUDA backward (dQ, dK, dV) against the fp64 oracle's gradients with the docs/design.md rule: fresh
// random inputs every run (seed printed; replay with FLATATTN_SEED), dq/dk/dv poisoned with NaN before
// each run (so an unwritten element fails), every kernel head dim, the adversarial list (odd N, Nq != Nk,
// both causal alignments, windows, fully masked rows, GQA/MQA, varlen with empty and length-1
// sequences, softcap, large logits, strided views) and the deterministic mode (two runs bitwise equal).
// The forward that feeds the backward is our CUDA forward (the training path) unless a test says oracle.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "src/core/half.h"
#include "src/cuda/dispatch.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

#define REQUIRE_DTYPE(dt) \
  if (!dtype_runs(dt)) GTEST_SKIP() << name(dt) << " does not run on this device (bf16 needs a SASS family)"

namespace {

/// Runs every case (a fresh tensor set each) through check_backward; stops at the first failing case.
void run_cases(const std::vector<Case>& cases, const char* test, FwdSource src = FwdSource::gpu) {
  const std::uint64_t seed = seed_for(test);
  std::mt19937_64 rng(seed);
  for (const Case& c : cases) {
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    check_backward(t, seed, test, src);
    if (::testing::Test::HasFailure()) return;  // one replayable failure is enough
  }
}

/// Every kernel head dim (and padded ones), odd lengths, Nq != Nk, causal and not.
std::vector<Case> head_dims(DType dt) {
  std::vector<Case> v;
  for (std::int64_t d : {32, 64, 96, 128, 192, 256, 80, 40}) {
    for (bool causal : {false, true}) {
      Case c = small_case(dt, 97, 113, d);
      c.options.causal = causal;
      v.push_back(c);
    }
  }
  return v;
}

/// edge_cases (device_case.h) plus the backward's own: Nk < Nq long block, sliding windows, large
/// logits, wider GQA, varlen with length-1 sequences, softcap.
std::vector<Case> adversarial(DType dt) {
  std::vector<Case> v = edge_cases(dt);
  {  // a long non-causal row block against fewer keys
    Case c = small_case(dt, 1025, 300);
    c.batch = 1;
    v.push_back(c);
  }
  {  // sliding windows, both alignments
    Case c = small_case(dt, 300, 260, 128);
    c.options.window = {31, 5};
    v.push_back(c);
    c.options.window = {64, 0};
    c.options.causal = true;
    v.push_back(c);
    c.options.causal = false;
    c.options.window = {0, 64};
    c.options.causal_align = CausalAlign::top_left;
    v.push_back(c);
    c.options.window = {100, -1};
    v.push_back(c);
  }
  {  // large logits: scale * |q.k| ~ 1e3..1e4 (f16 inputs stay finite)
    Case c = small_case(dt, 77, 128);
    c.options.softmax_scale = 1.f;
    c.input_sd = 20.0;
    v.push_back(c);
    c.options.causal = true;
    v.push_back(c);
  }
  {  // wider GQA (dK, dV summed over the query heads of a group)
    Case c = small_case(dt, 250, 250, 128);
    c.hq = 4, c.hkv = 1;
    c.options.causal = true;
    v.push_back(c);
  }
  {  // varlen with empty and length-1 sequences on both sides
    Case c = small_case(dt, 0, 0, 128);
    c.varlen = true;
    c.seqlens_q = {0, 5, 0, 130, 64, 1, 1};
    c.seqlens_k = {7, 0, 0, 130, 200, 1, 33};
    c.batch = 7;
    v.push_back(c);
    c.options.causal = true;
    c.strided = true;
    v.push_back(c);
    c.options.causal = false;
    c.hq = 4, c.hkv = 2;
    c.d = 64;
    c.options.window = {20, 3};
    v.push_back(c);
  }
  {  // softcap (Gemma 2), with causal and a window
    Case c = small_case(dt, 150, 150, 128);
    c.options.softcap = 30.f;
    c.options.causal = true;
    c.input_sd = 3.0;
    v.push_back(c);
    c.options.causal = false;
    c.options.softcap = 5.f;
    c.options.window = {31, 5};
    v.push_back(c);
    c = small_case(dt, 97, 70, 64);
    c.options.softcap = 10.f;
    c.strided = true;
    v.push_back(c);
  }
  return v;
}

/// Whether rows [r0, r1) of sequence b of a batched (B, N, H, D) tensor are all exactly 0.
bool rows_are_zero(const HostTensor& t, std::int64_t b, std::int64_t r0, std::int64_t r1) {
  const std::int64_t n = t.shape[1], h = t.shape[2], d = t.shape[3];
  for (std::int64_t r = r0; r < r1; ++r)
    for (std::int64_t i = 0; i < h * d; ++i)
      if (t.at((b * n + r) * h * d + i) != 0.0) return false;
  return true;
}

}  // namespace

TEST(CudaBackward, HeadDimsF16) {
  REQUIRE_GPU();
  REQUIRE_DTYPE(DType::f16);
  run_cases(head_dims(DType::f16), "HeadDimsF16");
}

TEST(CudaBackward, HeadDimsBF16) {
  REQUIRE_GPU();
  REQUIRE_DTYPE(DType::bf16);
  run_cases(head_dims(DType::bf16), "HeadDimsBF16");
}

TEST(CudaBackward, AdversarialF16) {
  REQUIRE_GPU();
  REQUIRE_DTYPE(DType::f16);
  run_cases(adversarial(DType::f16), "AdversarialF16");
}

TEST(CudaBackward, AdversarialBF16) {
  REQUIRE_GPU();
  REQUIRE_DTYPE(DType::bf16);
  run_cases(adversarial(DType::bf16), "AdversarialBF16");
}

// out and lse from the fp64 oracle (rounded to the dtype / fp32): the backward alone, without the
// forward's error, on a few masks and both dtypes.
TEST(CudaBackward, OracleForwardInputs) {
  REQUIRE_GPU();
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    std::vector<Case> v;
    Case c = small_case(dt, 131, 200, 128);
    v.push_back(c);
    c.options.causal = true;
    c.hq = 4, c.hkv = 2;
    v.push_back(c);
    c = small_case(dt, 90, 50, 64);
    c.options.causal = true;  // rows 0..39 fully masked (LSE = -inf)
    v.push_back(c);
    run_cases(v, dt == DType::f16 ? "OracleForwardInputsF16" : "OracleForwardInputsBF16", FwdSource::oracle);
  }
}

TEST(CudaBackward, RandomSweep) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("RandomSweep");
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 40; ++i) {
    const DType dt = i % 2 == 0 || !dtype_runs(DType::bf16) ? DType::f16 : DType::bf16;
    const Case c = random_case(rng, dt, 300);
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    check_backward(t, seed, ("random #" + std::to_string(i)).c_str());
    if (::testing::Test::HasFailure()) return;
  }
}

// The FLAT forward's out and lse feed the same backward (the backward only needs O and LSE).
TEST(CudaBackward, AfterFlatForward) {
  REQUIRE_GPU();
  std::vector<Case> v;
  for (std::int64_t d : {64, 128}) {
    Case c = small_case(DType::f16, 100, 128, d);
    c.options.dataflow = Dataflow::flat;
    c.options.causal = d == 128;
    v.push_back(c);
  }
  run_cases(v, "AfterFlatForward");
}

TEST(CudaBackward, LongCausal) {
  REQUIRE_GPU();
  const DType dt = dtype_runs(DType::bf16) ? DType::bf16 : DType::f16;
  Case c = small_case(dt, 2048, 2048, 128);
  c.batch = 1;
  c.hq = 2;
  c.hkv = 1;
  c.options.causal = true;
  run_cases({c}, "LongCausal");
}

// Rows that see no key (LSE = -inf) get dQ = 0 exactly and no NaN anywhere; keys no row sees get
// dK = dV = 0.
TEST(CudaBackward, FullyMaskedRowsGiveZeroGradients) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("FullyMaskedRowsGiveZeroGradients");
  std::mt19937_64 rng(seed);
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    Case c = small_case(dt, 150, 40, 64);  // bottom-right causal: rows 0..109 see no key
    c.options.causal = true;
    CaseTensors t = make_case(c, rng, true);
    check_backward(t, seed, "fully masked rows");
    for (std::int64_t b = 0; b < c.batch; ++b) EXPECT_TRUE(rows_are_zero(t.dq, b, 0, 110)) << "dq of masked rows";
    Case w = small_case(dt, 64, 200, 64);  // top-left causal: keys 64..199 are seen by no row
    w.options.causal = true;
    w.options.causal_align = CausalAlign::top_left;
    t = make_case(w, rng, true);
    check_backward(t, seed, "unseen keys");
    for (std::int64_t b = 0; b < w.batch; ++b) {
      EXPECT_TRUE(rows_are_zero(t.dk, b, 64, 200)) << "dk of unseen keys";
      EXPECT_TRUE(rows_are_zero(t.dv, b, 64, 200)) << "dv of unseen keys";
    }
  }
}

// Strided views: the kernels write only the logical elements (the padding keeps its NaN poison).
TEST(CudaBackward, StridedWritesOnlyTheView) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("StridedWritesOnlyTheView");
  std::mt19937_64 rng(seed);
  Case c = small_case(DType::f16, 70, 90, 96);
  c.strided = true;
  c.hq = 4;
  c.hkv = 2;
  CaseTensors t = make_case(c, rng, true);
  check_backward(t, seed, "strided");
  for (const HostTensor* g : {&t.dq, &t.dk, &t.dv}) {
    std::vector<bool> logical(g->storage.size() / element_size(g->dtype), false);
    for (std::int64_t i = 0; i < g->numel(); ++i) logical[g->offset(i)] = true;
    std::int64_t written = 0;
    for (std::size_t e = 0; e < logical.size(); ++e)
      if (!logical[e] && !std::isnan(load_double(g->storage.data(), g->dtype, static_cast<std::int64_t>(e)))) ++written;
    EXPECT_EQ(written, 0) << "elements outside the view were written";
  }
}

// Deterministic mode: two runs (default stream, then a fresh non-blocking stream) give bitwise equal
// dq, dk, dv, which also pass the oracle check. Shapes with many key blocks per query block (the dQ
// sum order matters) and GQA (several query heads per CTA).
TEST(CudaBackward, DeterministicIsBitwiseReproducible) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("DeterministicIsBitwiseReproducible");
  std::mt19937_64 rng(seed);
  std::vector<Case> cases;
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    Case c = small_case(dt, 700, 800, 128);
    c.hq = 4, c.hkv = 2;
    cases.push_back(c);
    c.options.causal = true;
    c.d = 64;
    cases.push_back(c);
    Case v = small_case(dt, 0, 0, 64);
    v.varlen = true;
    v.seqlens_q = {300, 0, 700, 1};
    v.seqlens_k = {900, 4, 650, 1};
    v.batch = 4;
    v.options.window = {200, 50};
    cases.push_back(v);
  }
  // Inputs shaped against the fixed-point unit (common/repro_dq.cuh), which follows a bound of each row:
  // gradients of 1e-30 and 1e+20 keep their precision (bf16: fp32's exponent range), with large logits;
  // an outlier channel of K (x100) and an outlier row of V (x30) loosen the bound by those factors.
  using Adjust = std::function<void(CaseTensors&)>;
  std::vector<Adjust> adjust(cases.size(), [](CaseTensors&) {});
  auto scale_where = [](HostTensor& x, double f, auto&& pick) {
    for (std::int64_t e = 0; e < x.numel(); ++e)
      if (pick(e)) x.set(e, x.at(e) * f);
  };
  if (dtype_runs(DType::bf16)) {
    for (double scale : {1e-30, 1e20}) {
      Case big = small_case(DType::bf16, 200, 333, 64);
      big.input_sd = 4.0;
      cases.push_back(big);
      adjust.push_back([=](CaseTensors& t) { scale_where(t.dout, scale, [](std::int64_t) { return true; }); });
    }
    Case outlier = small_case(DType::bf16, 300, 2000, 128);
    cases.push_back(outlier);
    adjust.push_back([=](CaseTensors& t) {
      const std::int64_t d = outlier.d;
      scale_where(t.k, 100.0, [&](std::int64_t e) { return e % d == 5; });  // channel 5 of every key
      scale_where(t.v, 30.0, [&](std::int64_t e) { return e < d; });       // the first key's value row
    });
  }
  for (std::size_t ci = 0; ci < cases.size(); ++ci) {
    Case c = cases[ci];
    c.options.deterministic = true;
    CaseTensors t = make_case(c, rng, true);
    adjust[ci](t);
    check_backward(t, seed, "deterministic");  // run 1 (default stream), judged against the oracle
    CaseTensors u = t;
    u.dq.poison();
    u.dk.poison();
    u.dv.poison();
    const Report r = run_backward_on_gpu(u, /*own_stream=*/true);  // run 2, fresh poisoned outputs
    EXPECT_NE(r.kernel.find("deterministic"), std::string::npos) << r.kernel;
    for (auto [a, b, g] : {std::tuple{&t.dq, &u.dq, "dq"}, std::tuple{&t.dk, &u.dk, "dk"}, std::tuple{&t.dv, &u.dv, "dv"}})
      EXPECT_EQ(std::memcmp(a->storage.data(), b->storage.data(), a->bytes()), 0)
          << g << " differs between two deterministic runs [" << c.name() << "] seed " << seed;
    if (::testing::Test::HasFailure()) return;
  }
}

// A NaN in one row of dO: the deterministic mode gives NaN in exactly the rows of dQ where the default
// mode does (that row; common/repro_dq.cuh makes a row with a non-finite bound NaN), finite elsewhere.
TEST(CudaBackward, DeterministicNonFiniteRowsMatchDefault) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("DeterministicNonFiniteRowsMatchDefault");
  std::mt19937_64 rng(seed);
  Case c = small_case(dtype_runs(DType::bf16) ? DType::bf16 : DType::f16, 130, 200, 64);
  CaseTensors t = make_case(c, rng, true);
  t.dout.set(5 * c.d + 3, std::numeric_limits<double>::quiet_NaN());
  run_on_gpu(t);
  CaseTensors det = t;
  det.c.options.deterministic = true;
  det.dq.poison();
  run_backward_on_gpu(t);
  run_backward_on_gpu(det);
  std::int64_t nan_count = 0, mismatch = 0;
  for (std::int64_t e = 0; e < t.dq.numel(); ++e) {
    nan_count += std::isnan(det.dq.at(e)) ? 1 : 0;
    mismatch += std::isnan(det.dq.at(e)) != std::isnan(t.dq.at(e)) ? 1 : 0;
  }
  EXPECT_EQ(nan_count, c.d) << "one row of dQ is NaN; seed " << seed;
  EXPECT_EQ(mismatch, 0) << "NaN elements of dQ differ between the modes; seed " << seed;
}

TEST(CudaBackward, NonDefaultStream) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("NonDefaultStream");
  std::mt19937_64 rng(seed);
  Case c = small_case(DType::f16, 300, 257, 64);
  c.options.causal = true;
  CaseTensors t = make_case(c, rng, true);
  run_on_gpu(t, /*own_stream=*/true);
  run_backward_on_gpu(t, /*own_stream=*/true);
  const BackwardOracle ref = oracle_backward(t);
  for (auto [out, rf, g] : {std::tuple{&t.dq, &ref.dq, "dq"}, std::tuple{&t.dk, &ref.dk, "dk"},
                            std::tuple{&t.dv, &ref.dv, "dv"}}) {
    // No naive yardstick here: a loose bound (1e-2 relative) that still catches unordered work.
    const Verdict v = judge(*out, *rf, nullptr, DType::f16, 1e-2);
    EXPECT_TRUE(v.pass) << g << " " << v.detail() << " seed " << seed;
  }
}

TEST(CudaBackward, ReportNamesTheKernel) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  Case c = small_case(DType::f16, 64, 100, 80);
  CaseTensors t = make_case(c, rng, true);
  // D = 80 runs zero-padded to the next built head dim (96 in a full build; FLATATTN_HDIMS may leave it out):
  // the forward's kernel names the same one.
  const Report f = run_on_gpu(t);
  const std::size_t at = f.kernel.find("_d");
  ASSERT_NE(at, std::string::npos) << f.kernel;
  const std::string padded = f.kernel.substr(at, f.kernel.find_first_not_of("0123456789", at + 2) - at);
  ASSERT_NE(padded, "_d80") << f.kernel;
  const Report r = run_backward_on_gpu(t);
  EXPECT_EQ(r.backend, "cuda");
  EXPECT_EQ(r.dataflow, Dataflow::flash);
  EXPECT_NE(r.kernel.find("bwd_"), std::string::npos) << r.kernel;
  EXPECT_NE(r.kernel.find(padded + " "), std::string::npos) << r.kernel << " (the forward ran " << f.kernel << ")";
  EXPECT_NE(r.kernel.find("zero-padded"), std::string::npos) << r.kernel;
  EXPECT_GT(r.block_m, 0);
  EXPECT_GT(r.block_n, 0);
}

// A small representative set for compute-sanitizer (memcheck, racecheck, synccheck): three head dims
// (128- and 64-byte swizzles), causal, ragged tiles, GQA, varlen with empty sequences, deterministic.
TEST(CudaBackward, SanitizerSet) {
  REQUIRE_GPU();
  std::vector<Case> v;
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    for (std::int64_t d : {64, 96, 128}) {
      Case c = small_case(dt, 70, 150, d);
      c.batch = 1;
      c.hq = 2;
      c.options.causal = d != 96;
      c.options.deterministic = d == 64;
      c.strided = d == 128;
      v.push_back(c);
    }
    Case c = small_case(dt, 0, 0, 64);
    c.varlen = true;
    c.seqlens_q = {0, 9, 70};
    c.seqlens_k = {3, 0, 165};
    c.batch = 3;
    v.push_back(c);
    // Staged (src/cuda/staging.h): D % 8 != 0, varlen and strided with unaligned rows.
    c.d = 59;
    v.push_back(c);
    Case s = small_case(dt, 70, 150, 59);
    s.batch = 1;
    s.strided = true;
    s.options.deterministic = true;
    v.push_back(s);
  }
  run_cases(v, "SanitizerSet");
}
