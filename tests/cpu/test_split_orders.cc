// Which piece products the f16 split keeps (SplitPolicy kSplitF16, src/cpu/amx/amx.h): all 4 for S = Q K^T and
// dP = dO V^T (max_order), 3 for the products whose left operand is P or dS -- lo x lo dropped (pv_max_order).
// Each half can fail on its own:
//   - O += P V on the policy's products is held to the bound of its two approximations (the dropped lo x lo,
//     <= 2^-16 P|V| a term, and P's 2-piece residual, <= 2^-17 P), on the tile kernels of every bf16 path; a list
//     that keeps fewer (one piece of V or of P) is over that bound, and the test checks that it is.
//   - An f16 case whose logits cancel in their high pieces (hi x hi sums to 0 key pair by key pair, lo x lo does
//     not) leaves S's lo x lo at ~2^-9 of S. The LSE is judged at 1e-5 (judge_lse), so S without lo x lo fails.
// Large logits (sd 100, near one-hot rows) through the split forward and backward are test_split_backward.cc's
// F16LargeSoftcappedLogits; it fails too when S loses lo x lo or P V keeps only hi x hi, but by less (1.1-12x).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "src/core/half.h"
#include "src/cpu/amx/amx.h"
#include "src/cpu/gemm.h"
#include "tests/cpu/cpu_check.h"
#include "tests/cpu/matmul_env.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

/// The (a, b) pieces of a product list as a bit set: bit 3 a + b.
unsigned pair_set(int n, const int* a, const int* b) {
  unsigned set = 0;
  for (int t = 0; t < n; ++t) set |= 1u << (3 * a[t] + b[t]);
  return set;
}

// The f16 lists by name: S / dP take hi hi, hi lo, lo hi, lo lo; P V and the gradients hi hi, hi lo, lo hi. Both
// cross products stay (each is up to 2^-8 of a term: as large as rounding the operand to one bf16 piece).
TEST(CpuSplitOrders, F16ListsAreFourForSAndThreeForPv) {
  int a[9], b[9];
  const unsigned hh = 1u << 0, hl = 1u << 1, lh = 1u << 3, ll = 1u << 4;
  int n = cpu::split_pairs(cpu::kSplitF16, a, b);
  EXPECT_EQ(n, 4);
  EXPECT_EQ(pair_set(n, a, b), hh | hl | lh | ll);
  n = cpu::split_pairs_pv(cpu::kSplitF16, a, b);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(pair_set(n, a, b), hh | hl | lh);
  EXPECT_EQ(a[n - 1] + b[n - 1], 0);  // hi x hi last (smallest first, as the accumulation order wants)
  // The other policies keep one list for both: one piece (bf16), all 9 (f32 experimental).
  EXPECT_EQ(cpu::split_pairs_pv(cpu::kSplitBf16, a, b), 1);
  EXPECT_EQ(cpu::split_pairs_pv(cpu::kSplitF32x9, a, b), 9);
  EXPECT_EQ(cpu::split_pairs(cpu::kSplitF32x9, a, b), 9);
}

/// max over (i, n) of |o - sum_j p v| / sum_j p |v| for O = P V computed on the products split_pairs_pv(pol) of the
/// pieces of p (fp32, rows x keys) and v (f16 values, keys x d), on one bf16 path ("amx" or "avx512bf16").
double pv_error(const std::string& path, const cpu::SplitPolicy& pol, const std::vector<float>& p,
                const std::vector<std::uint16_t>& v, std::int64_t rows, std::int64_t keys, std::int64_t d) {
  const std::int64_t dp = cpu::padded_d(d), pplane = rows * keys, vplane = keys * dp;
  std::vector<std::uint16_t> pb(static_cast<std::size_t>(2 * pplane)), vb(static_cast<std::size_t>(2 * vplane));
  cpu::split_to_bf16(p.data(), rows, keys, keys, cpu::kSplitF16, pb.data(), pplane);
  cpu::pack_v_split(cpu::Rows{v.data(), DType::f16, 0, d}, keys, keys, d, dp, cpu::kSplitF16, vb.data(), vplane);
  int a[9], b[9];
  const int n = cpu::split_pairs_pv(pol, a, b);
  std::vector<float> o(static_cast<std::size_t>(rows * dp), 0.f);
  if (path == "amx") cpu::amx_begin();
  for (int t = 0; t < n; ++t) {
    const std::uint16_t* pt = pb.data() + a[t] * pplane;
    const std::uint16_t* vt = vb.data() + b[t] * vplane;
    if (path == "amx") {
      cpu::amx_pv(pt, keys, rows, keys, vt, dp, o.data(), dp);
    } else {
      cpu::dpbf16_pv(pt, keys, rows, keys, vt, dp, o.data(), dp);
    }
  }
  if (path == "amx") cpu::amx_end();
  double worst = 0;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t c = 0; c < d; ++c) {
      double ref = 0, mag = 0;
      for (std::int64_t j = 0; j < keys; ++j) {
        const double pv = double(p[i * keys + j]) * f16_to_float(v[j * d + c]);
        ref += pv, mag += std::abs(pv);
      }
      worst = std::max(worst, std::abs(o[i * dp + c] - ref) / mag);
    }
  return worst;
}

// O += P V with P in (0, 1] (softmax rows from flat to near one-hot) and V f16: the policy's 3 products are within
// 2^-13 of sum_j P |V| (the budget: dropped lo x lo 2^-16, P's residual 2^-17, fp32 accumulation of 3 x 64 terms
// <= 192 x 2^-24 ~ 2^-16.4, together < 2^-14.8: 3.5x margin), while dropping a cross product or V's low piece puts a
// one-hot row's error at up to 2^-8 of its V (2^-8 of the operand, not of a product) -- the bound must see that.
TEST(CpuSplitOrders, PvProductsMeetTheirBoundOnTheTileKernels) {
  const std::vector<std::string> paths = bf16_paths();
  if (paths.empty()) GTEST_SKIP() << "no bf16 matrix path here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  const std::int64_t rows = 32, keys = 64, d = 64;
  std::vector<float> p(static_cast<std::size_t>(rows * keys));
  std::normal_distribution<double> nd;
  for (std::int64_t i = 0; i < rows; ++i) {  // logits of sd 0.25 .. 16: flat rows to one-hot rows
    const double sd = std::ldexp(0.25, static_cast<int>(i % 7));
    std::vector<double> x(static_cast<std::size_t>(keys));
    double m = -INFINITY, l = 0;
    for (auto& e : x) e = sd * nd(s.rng), m = std::max(m, e);
    for (auto& e : x) l += std::exp(e - m);
    for (std::int64_t j = 0; j < keys; ++j) p[i * keys + j] = static_cast<float>(std::exp(x[j] - m) / l);
  }
  std::vector<std::uint16_t> v(static_cast<std::size_t>(keys * d));
  for (auto& e : v) e = float_to_f16(static_cast<float>(nd(s.rng)));
  const double budget = std::ldexp(1.0, -13);
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    const double kept = pv_error(path, cpu::kSplitF16, p, v, rows, keys, d);
    EXPECT_LE(kept, budget) << "the f16 P / dS products (" << cpu::kSplitF16.pv_max_order
                            << ") lose more than the dropped lo x lo and P's residual";
    const double one = pv_error(path, cpu::SplitPolicy{2, 2, 0, ""}, p, v, rows, keys, d);  // hi x hi only
    EXPECT_GT(one, 4 * budget) << "the bound does not see V or P cut to one bf16 piece";
    const double all = pv_error(path, cpu::SplitPolicy{2, 2, 2, ""}, p, v, rows, keys, d);
    std::printf("[split pv] %s: max |err| / sum P|V|: 4 products 2^%.2f, the policy's 3 2^%.2f, hi x hi only 2^%.2f\n",
                path.c_str(), std::log2(all), std::log2(kept), std::log2(one));
  }
}

/// y's partner in a cancelling key pair: -(h - l) for y = h + l (h, l its bf16 pieces), whose pieces are -h and l,
/// so that x y + x partner(y) = 2 x l: the hi x hi products cancel exactly and the lo x lo ones add. -y (the pair
/// cancels whole) where -(h - l) is not an f16 value with those pieces.
double cancelling_partner(double y) {
  const float yf = static_cast<float>(y);
  const float h = bf16_to_float(cpu::bf16_piece(yf, 0)), l = bf16_to_float(cpu::bf16_piece(yf, 1));
  const float w = l - h;  // exact: both are multiples of y's f16 ulp, |w| < 2 |y|
  const bool ok = f16_to_float(float_to_f16(w)) == w && bf16_to_float(cpu::bf16_piece(w, 0)) == -h &&
                  bf16_to_float(cpu::bf16_piece(w, 1)) == l;
  return ok ? w : -y;
}

// S without its lo x lo products. Random f16 q, k of magnitude in [1, 2) made to cancel along D in pairs:
// q_{2m+1} = q_{2m}, k_{2m+1} = partner(k_{2m}), so S = scale sum_m 2 q_2m lo(k_2m) -- about 2^-9 of the |q||k| its
// products are made of -- and S's lo x lo is ~2^-9 of S. Every piece product is then a multiple of 2^-20 and every
// partial sum stays under 16 = 2^24 x 2^-20, so the 4 products give S exactly in fp32 in any order (AMX, AVX512-BF16
// and the fp32 path alike), and the LSE is left with the softmax's fp32 rounding (~1e-6, against judge_lse's 1e-5
// per row); without lo x lo each logit is off by ~2^-9 of itself (scale 128: |S| ~ 5, ~1e-2), ~100x over it.
// The forward and the backward are both judged by the rule.
TEST(CpuSplitOrders, F16CancellingLogitsNeedLoTimesLo) {
  const std::vector<std::string> paths = bf16_paths();
  if (paths.empty()) GTEST_SKIP() << "no bf16 matrix path here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c;
  c.dtype = DType::f16;
  c.batch = 2, c.nq = 48, c.nk = 80, c.hq = 2, c.hkv = 1, c.d = 64;
  c.input_sd = 1.5;               // q, k are redrawn below: |x| in [1, 2), either sign
  c.options.softmax_scale = 128.f;  // a power of two: the scaled S stays exact
  c.options.return_lse = true;
  for (const bool causal : {false, true}) {
    c.options.causal = causal;
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
    std::uniform_real_distribution<double> mag(1.0, 2.0);
    const auto draw = [&] {
      const double x = s.rng() % 2 ? mag(s.rng) : -mag(s.rng);
      return static_cast<double>(f16_to_float(float_to_f16(static_cast<float>(x))));
    };
    for (std::int64_t e = 0; e < t.q.numel(); e += 2) {
      const double x = draw();
      t.q.set(e, x), t.q.set(e + 1, x);
    }
    for (std::int64_t e = 0; e < t.k.numel(); e += 2) {
      const double y = draw();
      t.k.set(e, y), t.k.set(e + 1, cancelling_partner(y));
    }
    const ForwardOracle o = forward_yardstick(t);
    double lse_top = 0;
    for (std::int64_t i = 0; i < o.lse.numel(); ++i) lse_top = std::max(lse_top, std::abs(o.lse.at(i)));
    for (const std::string& path : paths) {
      ScopedMatmul m(path.c_str());
      const Report r = run_forward(t, c.options);
      EXPECT_TRUE(ends_with(r.kernel, "_" + path + "_split2")) << r.kernel;
      expect_forward_ok(t, o, r.kernel);
      double lse_err = 0;
      for (std::int64_t i = 0; i < o.lse.numel(); ++i) lse_err = std::max(lse_err, std::abs(t.lse.at(i) - o.lse.at(i)));
      std::printf("[split S] %s %s: max |lse - ref| %.2e (max |ref| %.1f)\n", c.name().c_str(), path.c_str(), lse_err,
                  lse_top);
      const BackwardOracle ref = oracle_backward(t);
      const BackwardYardstick y = naive_backward(t, ref);
      const Report rb = run_backward(t, c.options);
      EXPECT_TRUE(ends_with(rb.kernel, "_" + path + "_split2")) << rb.kernel;
      expect_backward_ok(t, ref, y, rb.kernel);
    }
  }
}

}  // namespace
