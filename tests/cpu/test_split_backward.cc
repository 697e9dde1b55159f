// The f16 backward on the bf16 matrix paths by operand splitting (SplitPolicy kSplitF16, src/cpu/amx/amx.h;
// src/cpu/backward.cc; issue 21): the 2-piece transpose of P^T / dS^T is the piece rule bit for bit, and the
// backward on every path this machine has meets the oracle's rule -- shapes that pad (D = 1, 3, 59, 200), every
// feature row, and the large softcapped logits (sd 100, softcap 5, D = 3) where the split forward's LSE met the
// fp32 backward's S before the split backward existed -- bitwise reproducible for any thread count.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "src/check/features.h"
#include "src/check/yardstick.h"
#include "src/core/half.h"
#include "src/cpu/amx/amx.h"
#include "tests/cpu/cpu_check.h"
#include "tests/cpu/matmul_env.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

/// The largest max_err / bound over dq, dk, dv of t (after a backward): 1 is the rule's limit.
double worst_ratio(const CaseTensors& t, const BackwardOracle& ref, const BackwardYardstick& y) {
  double worst = 0;
  for (const GradientVerdict& g : judge_backward(t, ref, y)) worst = std::max(worst, g.v.max_err / g.v.bound);
  return worst;
}

/// Forward (return_lse), oracle and yardstick of t under the current path; then the backward on the fp32 path
/// and on each split path (the forward on that same path first, as a user's call would run), each judged by the
/// rule; prints max_err / bound of both.
void check_split_backward(CaseTensors& t, const std::vector<std::string>& paths) {
  Options opt = t.c.options;
  opt.return_lse = true;
  double fp32_ratio = 0;
  {
    ScopedMatmul m("fp32");
    run_forward(t, opt);
    const BackwardOracle ref = oracle_backward(t);
    const BackwardYardstick y = naive_backward(t, ref);
    const Report r = run_backward(t, opt);
    EXPECT_EQ(r.kernel.find("split"), std::string::npos) << r.kernel;
    expect_backward_ok(t, ref, y, r.kernel);
    fp32_ratio = worst_ratio(t, ref, y);
  }
  for (const std::string& path : paths) {
    ScopedMatmul m(path.c_str());
    run_forward(t, opt);  // the split forward's LSE, which the split backward's S must match
    const BackwardOracle ref = oracle_backward(t);
    const BackwardYardstick y = naive_backward(t, ref);
    const Report r = run_backward(t, opt);
    EXPECT_TRUE(ends_with(r.kernel, "_" + path + "_split2")) << r.kernel;
    expect_backward_ok(t, ref, y, r.kernel);
    std::printf("[split bwd] %s: max_err / bound fp32 path %.3f, %s %.3f\n", t.c.name().c_str(), fp32_ratio,
                path.c_str(), worst_ratio(t, ref, y));
  }
}

// P^T and dS^T as 2 bf16 pieces: every element lands transposed, piece k the rule of bf16_piece (ties to even,
// residues of the first piece), the second plane where asked.
TEST(CpuSplitBackward, TwoPieceTransposeIsTheRule) {
  if (bf16_paths().empty()) GTEST_SKIP() << "no bf16 matrix path here";
  std::mt19937_64 rng(5);
  std::normal_distribution<float> nd(0.f, 3.f);
  const std::int64_t rows = 64, ncols = 48, lds = 50, ldt = 70, plane = ncols * ldt + 7;
  std::vector<float> src(static_cast<std::size_t>(rows * lds));
  for (auto& e : src) e = nd(rng);
  src[0] = 1.f + 1.f / 256;      // a tie: piece 0 rounds to even (1), piece 1 is the rest
  src[1] = 1.f + 3.f / 256 + 1e-6f;
  src[2] = 0.f, src[3] = -0.f;
  std::vector<std::uint16_t> out(static_cast<std::size_t>(2 * plane), 0xdead);
  cpu::bf16_transpose(src.data(), rows, ncols, lds, out.data(), ldt, 2, plane);
  for (int k = 0; k < 2; ++k)
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < ncols; ++j)
        ASSERT_EQ(out[k * plane + j * ldt + i], cpu::bf16_piece(src[i * lds + j], k))
            << "piece " << k << " row " << i << " col " << j;
  for (std::int64_t j = 0; j < ncols; ++j)
    for (std::int64_t i = rows; i < ldt; ++i) ASSERT_EQ(out[plane + j * ldt + i], 0xdead);  // beyond rows: untouched
}

// Shapes that pad (D = 1, 3, 16, 59, 128, 200), odd lengths, GQA, causal and not, Nq != Nk; both the fp32 path and
// each split path meet the rule (their max_err / bound printed side by side).
TEST(CpuSplitBackward, F16OnEveryPathMatchesTheOracle) {
  const std::vector<std::string> paths = bf16_paths();
  if (paths.empty()) GTEST_SKIP() << "no bf16 matrix path here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  const std::vector<CaseShape> shapes = {{1, 1, 1, 1, 1, 16, false},     {2, 37, 53, 4, 2, 59, true},
                                     {1, 130, 300, 2, 1, 128, true}, {2, 200, 200, 3, 3, 64, false},
                                     {1, 17, 250, 2, 2, 3, true},    {1, 70, 33, 2, 1, 200, false},
                                     {2, 40, 90, 2, 1, 1, false}};
  for (const CaseShape& sh : shapes) {
    const Case c = shape_case(DType::f16, sh);
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
    check_split_backward(t, paths);
  }
}

// The case CI's fuzz found over the rule when the split forward met the fp32 backward (f16, softcap 5, sd 100,
// D = 3), and neighbours: large logits (|S| ~ 1e4) make exp(S - LSE) sensitive to any difference between the
// forward's and the backward's S; the split backward recomputes S from the same products in the same order.
TEST(CpuSplitBackward, F16LargeSoftcappedLogits) {
  const std::vector<std::string> paths = bf16_paths();
  if (paths.empty()) GTEST_SKIP() << "no bf16 matrix path here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const std::int64_t d : {3, 8, 64})
    for (const float cap : {0.f, 5.f, 30.f})
      for (const bool causal : {false, true}) {
        Case c;
        c.dtype = DType::f16;
        c.batch = 2, c.nq = 61, c.nk = 77, c.hq = 2, c.hkv = 1, c.d = d;
        c.input_sd = 100.0;
        c.options.softcap = cap;
        c.options.causal = causal;
        SCOPED_TRACE(c.name());
        CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
        check_split_backward(t, paths);
      }
}

// Every feature row of the table (masks, windows, softcap, ALiBi, sinks, dropout, bias + dbias, varlen,
// block-sparse, GQA, odd D, large logits) in f16 through the split backward on each path (dsinks and dbias are
// judged by expect_backward_ok where the case has them).
TEST(CpuSplitBackward, F16FeatureTableOnBf16Paths) {
  const std::vector<std::string> paths = bf16_paths();
  if (paths.empty()) GTEST_SKIP() << "no bf16 matrix path here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    ScopedMatmul m(path.c_str());
    for (const Feature& f : features()) {
      const Case c = feature_case(f, DType::f16);
      SCOPED_TRACE(c.name());
      CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
      Options opt = c.options;
      opt.return_lse = true;
      run_forward(t, opt);
      const BackwardOracle ref = oracle_backward(t);
      const BackwardYardstick y = naive_backward(t, ref);
      const Report r = run_backward(t, opt);
      EXPECT_TRUE(ends_with(r.kernel, "_" + path + "_split2")) << r.kernel;
      expect_backward_ok(t, ref, y, r.kernel);
    }
  }
}

// dQ, dK, dV bitwise identical across runs and for 1, 2 and 3 threads on each split path, deterministic or not.
TEST(CpuSplitBackward, F16BitwiseReproducible) {
  const std::vector<std::string> paths = bf16_paths();
  if (paths.empty()) GTEST_SKIP() << "no bf16 matrix path here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c;
  c.dtype = DType::f16, c.batch = 2, c.nq = 150, c.nk = 230, c.hq = 4, c.hkv = 2, c.d = 59;
  c.options.causal = true;
  c.options.return_lse = true;
  CaseTensors t = make_case(c, s.rng, true);
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    ScopedMatmul m(path.c_str());
    run_forward(t, c.options);
    std::vector<std::vector<unsigned char>> grads;
    for (int threads : {1, 2, 2, 3})
      for (bool det : {false, true}) {
        Options opt = c.options;
        opt.num_threads = threads;
        opt.deterministic = det;
        const Report r = run_backward(t, opt);
        EXPECT_TRUE(ends_with(r.kernel, "_" + path + "_split2")) << r.kernel;
        std::vector<unsigned char> g(t.dq.storage.begin(), t.dq.storage.end());
        g.insert(g.end(), t.dk.storage.begin(), t.dk.storage.end());
        g.insert(g.end(), t.dv.storage.begin(), t.dv.storage.end());
        grads.push_back(std::move(g));
      }
    for (std::size_t i = 1; i < grads.size(); ++i) EXPECT_TRUE(grads[i] == grads[0]) << "run " << i;
  }
}

}  // namespace
