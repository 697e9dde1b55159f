// The oracle checked against hand-computed values, its own invariants (GQA = repeated heads, varlen =
// per-sequence calls) and finite differences of its forward (for its backward).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "src/reference/reference.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"

using namespace flatattn;
using namespace flatattn::check;

namespace {
HostTensor f64(std::vector<std::int64_t> shape, std::vector<double> values = {}) {
  HostTensor t = HostTensor::make(DType::f64, std::move(shape));
  if (values.empty()) {
    t.poison();
  } else {
    for (std::size_t i = 0; i < values.size(); ++i) t.set(static_cast<std::int64_t>(i), values[i]);
  }
  return t;
}
}  // namespace

TEST(Reference, HandComputedTwoByTwo) {
  HostTensor q = f64({1, 2, 1, 1}, {1, 2}), k = f64({1, 2, 1, 1}, {0, 1}), v = f64({1, 2, 1, 1}, {1, 3});
  HostTensor out = f64({1, 2, 1, 1}), lse = f64({1, 1, 2});
  Options o;
  o.softmax_scale = 1.f;
  o.return_lse = true;
  ref::forward({q.view(), k.view(), v.view(), out.view(), lse.view(), std::nullopt}, o);
  const double e = std::exp(1.0), e2 = std::exp(2.0);
  EXPECT_NEAR(out.at(0), (1 + 3 * e) / (1 + e), 1e-15);
  EXPECT_NEAR(out.at(1), (1 + 3 * e2) / (1 + e2), 1e-15);
  EXPECT_NEAR(lse.at(0), std::log(1 + e), 1e-15);
  EXPECT_NEAR(lse.at(1), std::log(1 + e2), 1e-15);
}

TEST(Reference, CausalAlignmentsAndFullyMaskedRows) {
  // Nq = 3, Nk = 2, D = 1. Bottom-right causal: row 0 sees nothing (diag = -1), row 1 key 0, row 2 keys 0-1.
  HostTensor q = f64({1, 3, 1, 1}, {0.5, -1, 2}), k = f64({1, 2, 1, 1}, {1, -2}), v = f64({1, 2, 1, 1}, {4, 7});
  HostTensor out = f64({1, 3, 1, 1}), lse = f64({1, 1, 3});
  Options o;
  o.causal = true;
  o.return_lse = true;
  o.softmax_scale = 1.f;
  ref::forward({q.view(), k.view(), v.view(), out.view(), lse.view(), std::nullopt}, o);
  EXPECT_EQ(out.at(0), 0.0);
  EXPECT_EQ(lse.at(0), -std::numeric_limits<double>::infinity());
  EXPECT_DOUBLE_EQ(out.at(1), 4.0);
  EXPECT_DOUBLE_EQ(lse.at(1), -1.0);
  const double s0 = 2.0, s1 = -4.0, m = std::log(std::exp(s0) + std::exp(s1));
  EXPECT_NEAR(out.at(2), (4 * std::exp(s0) + 7 * std::exp(s1)) / std::exp(m), 1e-14);
  // Top-left: row 0 sees key 0, rows 1 and 2 see both.
  o.causal_align = CausalAlign::top_left;
  ref::forward({q.view(), k.view(), v.view(), out.view(), lse.view(), std::nullopt}, o);
  EXPECT_DOUBLE_EQ(out.at(0), 4.0);
  EXPECT_DOUBLE_EQ(lse.at(0), 0.5);
  // Window (0, 0) bottom-right: row i sees only key i - 1.
  o.causal = false;
  o.causal_align = CausalAlign::bottom_right;
  o.window = {0, 0};
  ref::forward({q.view(), k.view(), v.view(), out.view(), lse.view(), std::nullopt}, o);
  EXPECT_EQ(out.at(0), 0.0);
  EXPECT_DOUBLE_EQ(out.at(1), 4.0);
  EXPECT_DOUBLE_EQ(out.at(2), 7.0);
  EXPECT_DOUBLE_EQ(lse.at(2), -4.0);
}

TEST(Reference, GqaEqualsRepeatedKvHeads) {
  std::mt19937_64 rng(fresh_seed());
  Case c;
  c.batch = 2, c.nq = 9, c.nk = 13, c.hq = 6, c.hkv = 2, c.d = 5;
  c.dtype = DType::f64;
  c.options.causal = true;
  CaseTensors t = make_case(c, rng);
  // Expand k/v to Hq heads.
  HostTensor k6 = HostTensor::make(DType::f64, {2, 13, 6, 5}), v6 = HostTensor::make(DType::f64, {2, 13, 6, 5});
  for (std::int64_t i = 0; i < k6.numel(); ++i) {
    const std::int64_t d = i % 5, h = (i / 5) % 6, n = (i / 30) % 13, b = i / 390;
    const std::int64_t src = ((b * 13 + n) * 2 + h / 3) * 5 + d;
    k6.set(i, t.k.at(src));
    v6.set(i, t.v.at(src));
  }
  HostTensor o1 = f64({2, 9, 6, 5}), o2 = f64({2, 9, 6, 5});
  ref::forward({t.q.view(), t.k.view(), t.v.view(), o1.view(), {}, std::nullopt}, c.options);
  ref::forward({t.q.view(), k6.view(), v6.view(), o2.view(), {}, std::nullopt}, c.options);
  for (std::int64_t i = 0; i < o1.numel(); ++i) ASSERT_DOUBLE_EQ(o1.at(i), o2.at(i));
}

TEST(Reference, VarlenEqualsPerSequenceCalls) {
  std::mt19937_64 rng(fresh_seed());
  Case c;
  c.varlen = true;
  c.seqlens_q = {3, 0, 7, 1};
  c.seqlens_k = {5, 4, 7, 0};
  c.hq = 2, c.hkv = 1, c.d = 4;
  c.dtype = DType::f64;
  c.options.causal = true;
  c.options.return_lse = true;
  CaseTensors t = make_case(c, rng);
  ForwardOracle all = oracle_forward(t);
  std::int64_t q0 = 0, k0 = 0;
  for (std::size_t b = 0; b < c.seqlens_q.size(); ++b) {
    const std::int64_t nq = c.seqlens_q[b], nk = c.seqlens_k[b];
    HostTensor q = f64({1, nq, 2, 4}), k = f64({1, nk, 1, 4}), v = f64({1, nk, 1, 4});
    for (std::int64_t i = 0; i < nq * 8; ++i) q.set(i, t.q.at(q0 * 8 + i));
    for (std::int64_t i = 0; i < nk * 4; ++i) {
      k.set(i, t.k.at(k0 * 4 + i));
      v.set(i, t.v.at(k0 * 4 + i));
    }
    HostTensor out = f64({1, nq, 2, 4}), lse = f64({1, 2, nq});
    ref::forward({q.view(), k.view(), v.view(), out.view(), lse.view(), std::nullopt}, c.options);
    for (std::int64_t i = 0; i < nq * 8; ++i) ASSERT_DOUBLE_EQ(out.at(i), all.out.at(q0 * 8 + i));
    for (std::int64_t h = 0; h < 2; ++h)
      for (std::int64_t i = 0; i < nq; ++i) ASSERT_EQ(lse.at(h * nq + i), all.lse.at(h * all.lse.shape[1] + q0 + i));
    q0 += nq;
    k0 += nk;
  }
}

// dL/dx for L = sum(dout * O) by central differences of the fp64 forward, against the oracle backward.
TEST(Reference, BackwardMatchesFiniteDifferences) {
  std::mt19937_64 rng(fresh_seed());
  for (int variant = 0; variant < 4; ++variant) {
    Case c;
    c.batch = 1, c.nq = 4, c.nk = 6, c.hq = 2, c.hkv = 1, c.d = 3;
    c.dtype = DType::f64;
    c.options.causal = variant & 1;
    c.options.softcap = (variant & 2) ? 2.0f : 0.0f;
    if (variant == 3) c.options.window = {1, -1};
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    BackwardOracle g = oracle_backward(t);
    auto loss = [&]() {
      HostTensor out = f64(t.out.shape);
      ref::forward({t.q.view(), t.k.view(), t.v.view(), out.view(), {}, std::nullopt}, c.options);
      double l = 0;
      for (std::int64_t i = 0; i < out.numel(); ++i) l += out.at(i) * t.dout.at(i);
      return l;
    };
    const double eps = 1e-6;
    for (auto [x, grad] : {std::pair{&t.q, &g.dq}, std::pair{&t.k, &g.dk}, std::pair{&t.v, &g.dv}}) {
      for (std::int64_t i = 0; i < x->numel(); ++i) {
        const double x0 = x->at(i);
        x->set(i, x0 + eps);
        const double lp = loss();
        x->set(i, x0 - eps);
        const double lm = loss();
        x->set(i, x0);
        ASSERT_NEAR(grad->at(i), (lp - lm) / (2 * eps), 1e-7) << c.name() << " element " << i;
      }
    }
  }
}

TEST(Reference, LowPrecisionNaiveIsCloseButNotExact) {
  std::mt19937_64 rng(fresh_seed());
  Case c;
  c.batch = 1, c.nq = 33, c.nk = 47, c.hq = 2, c.hkv = 2, c.d = 16;
  c.dtype = DType::bf16;
  CaseTensors t = make_case(c, rng);
  ForwardOracle o = oracle_forward(t);
  Verdict v = judge(o.naive_out, o.out, nullptr, DType::bf16, 0.05);
  EXPECT_TRUE(v.pass) << v.detail();
  EXPECT_GT(v.max_err, 0.0) << "bf16 rounding must show in the naive low-precision output";
  EXPECT_LT(v.rel_err, 2e-2);
}
