// ALiBi and attention sinks beyond the feature table (src/check/features.cc runs them against the oracle in
// every dtype): the oracle's dsinks against central finite differences of its own fp64 forward, the CPU
// engine's dsinks and dq/dk/dv against those, ALiBi's bias checked against a closed form, sinks far above
// the logits (no overflow), and the validation errors of the new arguments (nothing written).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "flatattn/flatattn.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/reference/reference.h"
#include "tests/cpu/cpu_check.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

/// L = sum(dout * out) of the oracle's fp64 forward of case t with its sinks replaced by `sinks`.
double loss(const CaseTensors& t, const std::vector<double>& sinks) {
  HostTensor s = HostTensor::make(DType::f64, {t.c.hq});
  for (std::int64_t h = 0; h < t.c.hq; ++h) s.set(h, sinks[h]);
  HostTensor out = HostTensor::make(DType::f64, t.out.shape);
  ForwardArgs a = t.forward_args();
  a.sinks = s.view();
  a.out = out.view();
  a.lse = {};
  Options o = t.c.options;
  o.return_lse = false;
  ref::forward(a, o, ref::Precision::f64);
  double l = 0;
  for (std::int64_t i = 0; i < out.numel(); ++i) l += out.at(i) * t.dout.at(i);
  return l;
}

/// dL/dsink_h by central differences (step 1e-4: the fp64 truncation error ~ 1e-8 relative).
std::vector<double> fd_dsinks(const CaseTensors& t) {
  std::vector<double> s(t.c.hq), g(t.c.hq);
  for (std::int64_t h = 0; h < t.c.hq; ++h) s[h] = t.sinks.at(h);
  const double eps = 1e-4;
  for (std::int64_t h = 0; h < t.c.hq; ++h) {
    std::vector<double> up = s, dn = s;
    up[h] += eps;
    dn[h] -= eps;
    g[h] = (loss(t, up) - loss(t, dn)) / (2 * eps);
  }
  return g;
}

Case sinks_case(DType dt, bool varlen) {
  Case c;
  c.dtype = dt;
  c.batch = 2, c.nq = 23, c.nk = 31, c.hq = 4, c.hkv = 2, c.d = 16;
  c.options.return_lse = true;
  c.options.causal = true;
  c.options.window = {9, 0};  // with Nq < Nk bottom-right: every row sees keys; the sink still matters
  c.sinks = true;
  c.sink_mean = 0.5;
  c.alibi = 1;
  if (varlen) {
    c.varlen = true;
    c.seqlens_q = {12, 0, 30};
    c.seqlens_k = {7, 4, 30};
    c.batch = 3;
    c.options.window = {-1, 0};
  }
  return c;
}

TEST(Sinks, OracleGradientMatchesFiniteDifferences) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (bool varlen : {false, true}) {
    CaseTensors t = make_case(sinks_case(DType::f32, varlen), s.rng, true);
    const BackwardOracle ref = oracle_backward(t);
    const std::vector<double> fd = fd_dsinks(t);
    double max_abs = 0;
    for (double x : fd) max_abs = std::max(max_abs, std::abs(x));
    ASSERT_GT(max_abs, 1e-3) << "the sinks do not move the loss: the check could not fail";
    for (std::int64_t h = 0; h < t.c.hq; ++h)
      EXPECT_NEAR(ref.dsinks.at(h), fd[h], 1e-6 * std::max(1.0, max_abs)) << "head " << h << " varlen " << varlen;
  }
}

TEST(Sinks, EngineGradientMatchesFiniteDifferences) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (bool varlen : {false, true}) {
    CaseTensors t = make_case(sinks_case(DType::f32, varlen), s.rng, true);
    Options o = t.c.options;
    run_forward(t, o);
    run_backward(t, o);
    const std::vector<double> fd = fd_dsinks(t);
    double max_abs = 0;
    for (double x : fd) max_abs = std::max(max_abs, std::abs(x));
    for (std::int64_t h = 0; h < t.c.hq; ++h)
      EXPECT_NEAR(t.dsinks.at(h), fd[h], 2e-5 * std::max(1.0, max_abs)) << "head " << h << " varlen " << varlen;
    // dq, dk, dv with ALiBi and sinks against the oracle under the rule (the table does this too).
    const BackwardOracle ref = oracle_backward(t);
    expect_backward_ok(t, ref, naive_backward(t, ref), "alibi+sinks");
  }
}

TEST(Sinks, FarAboveTheLogitsDoNotOverflow) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (double mean : {60.0, 200.0, -200.0}) {
    Case c = sinks_case(DType::f32, false);
    c.sink_mean = mean;
    c.alibi = 0;
    CaseTensors t = make_case(c, s.rng, true);
    Options o = t.c.options;
    for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
      o.dataflow = df;
      run_forward(t, o);
      EXPECT_EQ(t.out.count_nonfinite(), 0) << "sink mean " << mean;
      EXPECT_EQ(t.lse.count_nonfinite(), 0) << "sink mean " << mean;
      const ForwardOracle ref = forward_yardstick(t);
      if (mean < 85.0) {  // O ~ e^-mean is still an fp32 number
        expect_forward_ok(t, ref, "sink mean " + std::to_string(mean));
      } else {  // O underflows fp32 (to 0 or subnormals); the LSE (= the sink, nearly) must still be right
        const Verdict l = judge_lse(t.lse, ref.lse, lse_tolerance(t.c.input_sd, ref.lse, false, lse_logit_rounding(t)));
        EXPECT_TRUE(l.pass) << "sink mean " << mean << " lse: " << l.detail();
        for (std::int64_t i = 0; i < t.out.numel(); ++i) ASSERT_LE(std::abs(t.out.at(i)), 1e-30);
      }
    }
    o.dataflow = Dataflow::automatic;
    run_backward(t, o);
    EXPECT_EQ(t.dq.count_nonfinite() + t.dk.count_nonfinite() + t.dv.count_nonfinite() + t.dsinks.count_nonfinite(), 0);
  }
}

TEST(Sinks, FullyMaskedRowGetsZeroAndTheSink) {
  Case c;
  c.dtype = DType::f32;
  c.batch = 1, c.nq = 8, c.nk = 3, c.hq = 2, c.hkv = 1, c.d = 16;
  c.options.causal = true;  // bottom-right, Nq > Nk: rows 0..4 see nothing
  c.options.return_lse = true;
  c.sinks = true;
  CaseTensors t = make_case(c, 7, true);
  run_forward(t, t.c.options);
  for (std::int64_t h = 0; h < 2; ++h)
    for (std::int64_t i = 0; i < 5; ++i) {
      EXPECT_EQ(t.lse.at(h * 8 + i), static_cast<float>(t.sinks.at(h))) << "row " << i;
      for (std::int64_t d = 0; d < 16; ++d) EXPECT_EQ(t.out.at((i * 2 + h) * 16 + d), 0.0);
    }
}

/// ALiBi against its closed form: with q = 0 every logit is the bias alone, so O_i is the softmax of
/// -slope |i + Nk - Nq - j| over the visible keys applied to V.
TEST(Alibi, ZeroQueriesGiveTheBiasSoftmax) {
  for (CausalAlign align : {CausalAlign::bottom_right, CausalAlign::top_left}) {
    Case c;
    c.dtype = DType::f32;
    c.batch = 1, c.nq = 5, c.nk = 9, c.hq = 1, c.hkv = 1, c.d = 16;
    c.options.causal = true;
    c.options.causal_align = align;
    c.options.return_lse = true;
    c.alibi = 1;
    CaseTensors t = make_case(c, 11, false);
    for (std::int64_t e = 0; e < t.q.numel(); ++e) t.q.set(e, 0.0);
    run_forward(t, t.c.options);
    const double slope = t.alibi.at(0);
    for (std::int64_t i = 0; i < 5; ++i) {
      const std::int64_t hi = align == CausalAlign::bottom_right ? i + 4 : i;
      double sum = 0, o0 = 0;
      for (std::int64_t j = 0; j <= hi; ++j) {
        const double p = std::exp(-slope * std::abs(double(i + 4 - j)));
        sum += p;
        o0 += p * t.v.at(j * 16);
      }
      EXPECT_NEAR(t.out.at(i * 16), o0 / sum, 1e-5) << "row " << i;
      EXPECT_NEAR(t.lse.at(i), std::log(sum), 1e-5) << "row " << i;
    }
  }
}

// ---- validation: a clear error naming the argument, nothing written --------------------------------

struct Outputs {
  std::vector<unsigned char, Aligned64<unsigned char>> out, lse, dq, dk, dv, dsinks;
  explicit Outputs(const CaseTensors& t)
      : out(t.out.storage), lse(t.lse.storage), dq(t.dq.storage), dk(t.dk.storage), dv(t.dv.storage),
        dsinks(t.dsinks.storage) {}
  [[nodiscard]] bool same(const CaseTensors& t) const {
    return out == t.out.storage && lse == t.lse.storage && dq == t.dq.storage && dk == t.dk.storage &&
           dv == t.dv.storage && dsinks == t.dsinks.storage;
  }
};

void expect_refused(CaseTensors& t, const std::string& argument, const std::function<void(ForwardArgs&, Options&)>& fwd,
                    const std::function<void(BackwardArgs&, Options&)>& bwd) {
  const Outputs before(t);
  if (fwd) {
    ForwardArgs a = t.forward_args();
    Options o = t.c.options;
    fwd(a, o);
    try {
      forward(a, o);
      ADD_FAILURE() << "forward accepted a bad " << argument;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
      EXPECT_FALSE(e.fix().empty()) << e.what();
    }
  }
  if (bwd) {
    BackwardArgs a = t.backward_args();
    Options o = t.c.options;
    bwd(a, o);
    try {
      backward(a, o);
      ADD_FAILURE() << "backward accepted a bad " << argument;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
    }
  }
  EXPECT_TRUE(before.same(t)) << "an output was written before the error on " << argument;
}

TEST(AlibiSinksValidation, BadArgumentsAreRefused) {
  Case c;
  c.batch = 2, c.nq = 5, c.nk = 7, c.hq = 4, c.hkv = 2, c.d = 8;
  c.options.return_lse = true;
  c.alibi = 2;
  c.sinks = true;
  CaseTensors t = make_case(c, 3, true);
  HostTensor wrong3 = HostTensor::make(DType::f32, {3});
  HostTensor wrong_b = HostTensor::make(DType::f32, {3, 4});
  HostTensor f16 = HostTensor::make(DType::f16, {4});
  HostTensor f64 = HostTensor::make(DType::f64, {4});
  HostTensor strided = HostTensor::make(DType::f32, {4, 2});
  TensorView every_other = strided.view();  // (4) with stride 2: not contiguous
  every_other.rank = 1;
  every_other.shape[0] = 4;
  every_other.stride[0] = 2;

  // ALiBi slopes: shape (wrong Hq, wrong B), dtype, contiguity, device; with softcap.
  expect_refused(t, "alibi_slopes", [&](ForwardArgs& a, Options&) { a.alibi_slopes = wrong3.view(); },
                 [&](BackwardArgs& a, Options&) { a.alibi_slopes = wrong3.view(); });
  expect_refused(t, "alibi_slopes", [&](ForwardArgs& a, Options&) { a.alibi_slopes = wrong_b.view(); }, nullptr);
  expect_refused(t, "alibi_slopes", [&](ForwardArgs& a, Options&) { a.alibi_slopes = f16.view(); },
                 [&](BackwardArgs& a, Options&) { a.alibi_slopes = f64.view(); });
  expect_refused(t, "alibi_slopes", [&](ForwardArgs& a, Options&) { a.alibi_slopes = every_other; }, nullptr);
  expect_refused(t, "alibi_slopes", [&](ForwardArgs& a, Options&) { a.alibi_slopes = t.alibi.view(Device::cuda(0)); },
                 nullptr);
  expect_refused(t, "alibi_slopes", [&](ForwardArgs&, Options& o) { o.softcap = 30.f; },
                 [&](BackwardArgs&, Options& o) { o.softcap = 30.f; });
  // Sinks: length, dtype, contiguity; dsinks: length, and without sinks.
  expect_refused(t, "sinks", [&](ForwardArgs& a, Options&) { a.sinks = wrong3.view(); },
                 [&](BackwardArgs& a, Options&) { a.sinks = wrong3.view(); });
  expect_refused(t, "sinks", [&](ForwardArgs& a, Options&) { a.sinks = f16.view(); }, nullptr);
  expect_refused(t, "sinks", [&](ForwardArgs& a, Options&) { a.sinks = every_other; }, nullptr);
  expect_refused(t, "dsinks", nullptr, [&](BackwardArgs& a, Options&) { a.dsinks = wrong3.view(); });
  expect_refused(t, "dsinks", nullptr, [&](BackwardArgs& a, Options&) { a.sinks = {}; });
  expect_refused(t, "dsinks", nullptr, [&](BackwardArgs& a, Options&) { a.dsinks = f64.view(); });
}

}  // namespace
