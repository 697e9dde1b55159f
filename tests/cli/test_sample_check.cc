// The CLI's sampled-row checker (cli/sample_check.h): on every row it must agree exactly with the
// whole-tensor oracle comparison (so the one-row problems reproduce causal alignment, windows,
// softcap, GQA and varlen), and it must fail on a wrong value, a wrong mask and an unwritten row.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "cli/buffers.h"
#include "cli/sample_check.h"
#include "src/reference/reference.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"

namespace flatattn::cli {
namespace {

struct Shape {
  const char* name;
  std::int64_t batch, nq, nk, hq, hkv, d;
  bool causal;
  CausalAlign align;
  Window window;
  float softcap;
  std::vector<std::int32_t> seqlens_q = {}, seqlens_k = {};
};

const Shape kShapes[] = {
    {"causal bottom-right Nq<Nk GQA", 2, 37, 90, 4, 2, 16, true, CausalAlign::bottom_right, {}, 0},
    {"causal bottom-right Nq>Nk (masked rows)", 1, 50, 20, 2, 1, 8, true, CausalAlign::bottom_right, {}, 0},
    {"causal top-left softcap", 1, 40, 70, 2, 2, 16, true, CausalAlign::top_left, {}, 12},
    {"window (5,3) non-causal", 2, 33, 33, 2, 2, 8, false, CausalAlign::bottom_right, {5, 3}, 0},
    {"window (0,0) top-left Nq<Nk", 1, 20, 45, 3, 1, 8, false, CausalAlign::top_left, {0, 0}, 0},
    {"window (9,-1) causal", 1, 60, 60, 2, 2, 8, true, CausalAlign::bottom_right, {9, -1}, 0},
    {"varlen causal, empty sequence", 0, 0, 0, 4, 2, 8, true, CausalAlign::bottom_right, {}, 0, {7, 0, 30}, {12, 4, 25}},
};

void PrintTo(const Shape& s, std::ostream* os) { *os << s.name; }

struct Built {
  Tensor q, k, v, out, dout, dq, cu_q, cu_k;
  ForwardArgs fwd;
  BackwardArgs bwd;
  Options opt;
  std::int64_t total_rows = 0;
};

/// Random q, k, v, dout; out and dq computed by the oracle (f64 math stored in f32): a correct "kernel".
Built build(const Shape& s, std::uint64_t seed) {
  Built b;
  const bool vl = !s.seqlens_q.empty();
  std::int64_t tq = s.nq, tk = s.nk, batch = s.batch;
  if (vl) {
    batch = static_cast<std::int64_t>(s.seqlens_q.size());
    tq = tk = 0;
    for (std::size_t i = 0; i < s.seqlens_q.size(); ++i) {
      tq += s.seqlens_q[i];
      tk += s.seqlens_k[i];
    }
    b.q = Tensor::make(DType::f32, {tq, s.hq, s.d});
    b.k = Tensor::make(DType::f32, {tk, s.hkv, s.d});
    b.v = Tensor::make(DType::f32, {tk, s.hkv, s.d});
    b.cu_q = Tensor::make(DType::i32, {batch + 1});
    b.cu_k = Tensor::make(DType::i32, {batch + 1});
    auto* cq = static_cast<std::int32_t*>(b.cu_q.data());
    auto* ck = static_cast<std::int32_t*>(b.cu_k.data());
    cq[0] = ck[0] = 0;
    for (std::int64_t i = 0; i < batch; ++i) {
      cq[i + 1] = cq[i] + s.seqlens_q[i];
      ck[i + 1] = ck[i] + s.seqlens_k[i];
    }
  } else {
    b.q = Tensor::make(DType::f32, {batch, s.nq, s.hq, s.d}, {0, 2, 1, 3}, 3);  // strided (B, H, N, D) + pad
    b.k = Tensor::make(DType::f32, {batch, s.nk, s.hkv, s.d});
    b.v = Tensor::make(DType::f32, {batch, s.nk, s.hkv, s.d}, {0, 2, 1, 3});
  }
  b.out = Tensor::make(DType::f32, b.q.shape);
  b.dout = Tensor::make(DType::f32, b.q.shape);
  b.dq = Tensor::make(DType::f32, b.q.shape);
  b.q.fill_normal(seed ^ 1, 1.5);
  b.k.fill_normal(seed ^ 2, 1.5);
  b.v.fill_normal(seed ^ 3);
  b.dout.fill_normal(seed ^ 4);
  b.out.poison();
  b.dq.poison();
  b.opt.causal = s.causal;
  b.opt.causal_align = s.align;
  b.opt.window = s.window;
  b.opt.softcap = s.softcap;
  std::optional<Varlen> varlen;
  if (vl) varlen = Varlen{b.cu_q.view(), b.cu_k.view(), 0, 0};
  b.fwd = ForwardArgs{b.q.view(), b.k.view(), b.v.view(), b.out.view(), {}, varlen};
  ref::forward(b.fwd, b.opt);
  Tensor lse = Tensor::make(DType::f64, vl ? std::vector<std::int64_t>{s.hq, tq} : std::vector<std::int64_t>{batch, s.hq, s.nq});
  Tensor dk = Tensor::make(DType::f64, b.k.shape), dv = Tensor::make(DType::f64, b.k.shape);
  b.bwd = BackwardArgs{b.dout.view(), b.q.view(), b.k.view(), b.v.view(), b.out.view(), lse.view(),
                       b.dq.view(),   dk.view(),  dv.view(),  varlen};
  ref::backward(b.bwd, b.opt);
  b.total_rows = tq * s.hq;
  return b;
}

/// Every (b, h, i) row of the problem.
std::vector<RowId> all_rows(const Shape& s) {
  std::vector<RowId> rows;
  const std::int64_t batch = s.seqlens_q.empty() ? s.batch : static_cast<std::int64_t>(s.seqlens_q.size());
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t nq = s.seqlens_q.empty() ? s.nq : s.seqlens_q[b];
    for (std::int64_t h = 0; h < s.hq; ++h)
      for (std::int64_t i = 0; i < nq; ++i) rows.push_back({b, h, i});
  }
  return rows;
}

Verdict full_forward(const Built& b) {
  Tensor ref = Tensor::make(DType::f64, b.out.shape), naive = Tensor::make(DType::f32, b.out.shape);
  ForwardArgs a = b.fwd;
  a.out = ref.view();
  ref::forward(a, b.opt, ref::Precision::f64);
  a.out = naive.view();
  ref::forward(a, b.opt, ref::Precision::input);
  // The forward rule's allowance sum_j P_ij |V_jd| (check::judge_forward's): the oracle on |V|.
  Tensor abs_v = Tensor::make(DType::f64, b.v.shape), allow = Tensor::make(DType::f64, b.out.shape);
  for (std::int64_t i = 0; i < abs_v.numel(); ++i) abs_v.set(i, std::abs(b.v.at(i)));
  a.v = abs_v.view();
  a.out = allow.view();
  ref::forward(a, b.opt, ref::Precision::f64);
  return check::judge(b.out, ref, &naive, b.out.dtype, 0.0, &allow);
}

class SampleCheck : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    seed_ = check::fresh_seed();
    std::printf("FLATATTN_SEED=%llu\n", static_cast<unsigned long long>(seed_));
  }
  std::uint64_t seed_ = 0;
};

TEST_P(SampleCheck, AllRowsAgreeWithTheWholeTensorJudge) {
  const Shape& s = GetParam();
  Built b = build(s, seed_);
  const Verdict sampled = check_forward_rows(b.fwd, b.opt, all_rows(s));
  const Verdict whole = full_forward(b);
  EXPECT_TRUE(sampled.pass) << s.name << ": " << sampled.str();
  EXPECT_EQ(sampled.compared, whole.compared);
  EXPECT_DOUBLE_EQ(sampled.max_err, whole.max_err) << s.name;
  EXPECT_DOUBLE_EQ(sampled.naive_err, whole.naive_err) << s.name;
  EXPECT_DOUBLE_EQ(sampled.bound, whole.bound) << s.name;
  if (s.window.left != 0)  // window (0,0): each row sees one key, so out = v exactly and naive is exact too
    EXPECT_GT(sampled.naive_err, 0.0) << "the yardstick must be non-trivial";
}

TEST_P(SampleCheck, DqRowsPassAndMatchTheOracle) {
  const Shape& s = GetParam();
  Built b = build(s, seed_);
  const Verdict v = check_dq_rows(b.bwd, b.opt, all_rows(s));
  EXPECT_TRUE(v.pass) << s.name << ": " << v.str();
  EXPECT_LT(v.max_err, 1e-5) << "f32 storage of exact gradients: " << v.str();
}

TEST_P(SampleCheck, FailsOnAWrongValueInASampledRow) {
  const Shape& s = GetParam();
  Built b = build(s, seed_);
  const auto rows = sample_rows(b.fwd, b.opt, 8, seed_);
  ASSERT_FALSE(rows.empty());
  // Perturb one element of a sampled row by more than any f32 bound.
  const RowId r = rows.back();
  std::int64_t logical;
  if (s.seqlens_q.empty()) {
    logical = ((r.b * s.nq + r.i) * s.hq + r.h) * s.d + s.d / 2;
  } else {
    std::int64_t q0 = 0;
    for (std::int64_t i = 0; i < r.b; ++i) q0 += s.seqlens_q[i];
    logical = ((q0 + r.i) * s.hq + r.h) * s.d + s.d / 2;
  }
  b.out.set(logical, b.out.at(logical) + 1e-3);
  EXPECT_FALSE(check_forward_rows(b.fwd, b.opt, rows).pass);
  b.out.set(logical, std::nan(""));
  const Verdict v = check_forward_rows(b.fwd, b.opt, rows);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.nonfinite, 1);
}

TEST_P(SampleCheck, FailsWhenTheMaskIsWrong) {
  const Shape& s = GetParam();
  Built b = build(s, seed_);
  Options wrong = b.opt;  // the output was computed with b.opt; judge it as if the mask differed
  wrong.causal = !wrong.causal;
  wrong.window = {};
  EXPECT_FALSE(check_forward_rows(b.fwd, wrong, all_rows(s)).pass) << s.name;
}

INSTANTIATE_TEST_SUITE_P(Shapes, SampleCheck, ::testing::ValuesIn(kShapes));

TEST(SampleRows, CoversCornersAndIsDistinct) {
  Tensor q = Tensor::make(DType::f32, {3, 50, 4, 8}), k = Tensor::make(DType::f32, {3, 50, 4, 8});
  ForwardArgs a{q.view(), k.view(), k.view(), q.view(), {}, std::nullopt};
  const auto rows = sample_rows(a, {}, 40, 7);
  ASSERT_EQ(rows.size(), 40u);
  EXPECT_EQ(rows[0].b, 0);
  EXPECT_EQ(rows[0].i, 0);
  EXPECT_EQ(rows[1].b, 2);
  EXPECT_EQ(rows[1].h, 3);
  EXPECT_EQ(rows[1].i, 49);
  for (std::size_t x = 0; x < rows.size(); ++x)
    for (std::size_t y = x + 1; y < rows.size(); ++y)
      EXPECT_FALSE(rows[x].b == rows[y].b && rows[x].h == rows[y].h && rows[x].i == rows[y].i);
  EXPECT_EQ(sample_rows(a, {}, 100000, 7).size(), 3u * 50 * 4);  // capped at every row
}

TEST(Judge, AppliesTheRule) {
  Judge j(DType::bf16);
  j.add(1.0, 1.0, 1.0 + 1.0 / 128);
  Verdict v = j.finish();
  EXPECT_TRUE(v.pass);
  EXPECT_NEAR(v.bound, 2.0 / 128 + v.floor, 1e-12);
  j.add(2.0 + 3.0 / 64, 2.0, 2.0);  // error 0.047 > 2 * 0.0078 + floor
  EXPECT_FALSE(j.finish().pass);
  Judge inf(DType::f32);
  inf.add(-INFINITY, -INFINITY, -INFINITY);  // an empty row's LSE equals the reference
  EXPECT_TRUE(inf.finish().pass);
}

}  // namespace
}  // namespace flatattn::cli
