// The additive bias with gradient beyond the feature table (src/check/features.cc runs its rows against the
// oracle in every dtype): the oracle's dbias against central finite differences of its own fp64 forward, the
// CPU engine's forward and dbias against the oracle for every broadcast shape and bias dtype with causal,
// window, GQA, varlen and strided biases, the deterministic reduction bitwise across runs and thread counts,
// and the validation errors of bias/dbias (an Error naming the argument, nothing written).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "flatattn/flatattn.h"
#include "src/check/case.h"
#include "src/reference/reference.h"
#include "tests/cpu/cpu_check.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

/// L = sum(dout * out) of the oracle's fp64 forward of case t with the bias `b` (f64, the bias's shape).
double loss(const CaseTensors& t, const HostTensor& b) {
  HostTensor out = HostTensor::make(DType::f64, t.out.shape);
  ForwardArgs a = t.forward_args();
  a.bias = b.view();
  a.out = out.view();
  a.lse = {};
  Options o = t.c.options;
  o.return_lse = false;
  ref::forward(a, o, ref::Precision::f64);
  double l = 0;
  for (std::int64_t i = 0; i < out.numel(); ++i) l += out.at(i) * t.dout.at(i);
  return l;
}

/// dL/dbias by central differences in fp64 (step 1e-4) at every element of the bias.
HostTensor fd_dbias(const CaseTensors& t) {
  HostTensor b = HostTensor::make(DType::f64, t.bias.shape), g = HostTensor::make(DType::f64, t.bias.shape);
  for (std::int64_t e = 0; e < b.numel(); ++e) b.set(e, t.bias.at(e));
  const double eps = 1e-4;
  for (std::int64_t e = 0; e < b.numel(); ++e) {
    const double x = b.at(e);
    if (std::isinf(x)) {  // a hidden key: no gradient
      g.set(e, 0.0);
      continue;
    }
    b.set(e, x + eps);
    const double up = loss(t, b);
    b.set(e, x - eps);
    const double dn = loss(t, b);
    b.set(e, x);
    g.set(e, (up - dn) / (2 * eps));
  }
  return g;
}

Case small_case(DType dt, const std::string& dims) {
  Case c;
  c.dtype = dt;
  c.batch = 2, c.nq = 9, c.nk = 13, c.hq = 4, c.hkv = 2, c.d = 8;
  c.options.return_lse = true;
  c.options.causal = true;  // bottom-right with Nq < Nk: every row sees keys, some elements are masked
  c.bias_dims = dims;
  return c;
}

const char* const kDims[] = {"bhq", "hq", "bq", "q", "bh", "b", "h", "-"};

double max_abs(const HostTensor& x) {
  double m = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) m = std::max(m, std::abs(x.at(i)));
  return m;
}

}  // namespace

TEST(Bias, OracleGradientMatchesFiniteDifferences) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const char* dims : kDims) {
    for (bool varlen : {false, true}) {
      Case c = small_case(DType::f32, dims);
      if (varlen) {
        c.varlen = true;
        c.seqlens_q = {5, 0, 9};
        c.seqlens_k = {7, 3, 13};
        c.batch = 3;
        c.options.window = {4, 0};
      }
      CaseTensors t = make_case(c, s.rng, true);
      const BackwardOracle ref = oracle_backward(t);
      const HostTensor fd = fd_dbias(t);
      const double m = max_abs(fd);
      ASSERT_GT(m, 1e-3) << dims << ": the bias does not move the loss: the check could not fail";
      for (std::int64_t e = 0; e < fd.numel(); ++e)
        ASSERT_NEAR(ref.dbias.at(e), fd.at(e), 1e-6 * std::max(1.0, m)) << dims << " varlen " << varlen << " element " << e;
    }
  }
}

TEST(Bias, EngineMatchesOracleEveryShapeAndDtype) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  const DType dts[] = {DType::f32, DType::f16, DType::bf16};
  int k = 0;
  for (DType dt : dts)
    for (const char* dims : kDims) {
      const DType bdt = dts[k++ % 3];  // every (dtype, bias dtype) pair over the shapes
      {
        Case c = small_case(dt, dims);
        c.nq = 40, c.nk = 53, c.d = 32;
        c.bias_dtype = bdt;
        c.bias_strided = bdt == DType::bf16;
        c.strided = dt == DType::f16;
        c.options.window = {17, -1};
        CaseTensors t = make_case(c, s.rng, true);
        const std::string what = t.c.name();
        for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
          Options o = t.c.options;
          o.dataflow = df;
          run_forward(t, o);
          expect_forward_ok(t, forward_yardstick(t), what + " " + std::string(name(df)));
        }
        run_backward(t, t.c.options);
        EXPECT_EQ(t.dbias.count_nonfinite(), 0) << what;
        const BackwardOracle ref = oracle_backward(t);
        expect_backward_ok(t, ref, naive_backward(t, ref), what);
      }
    }
}

TEST(Bias, EngineGradientMatchesFiniteDifferences) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const char* dims : {"bhq", "q", "b"}) {
    CaseTensors t = make_case(small_case(DType::f32, dims), s.rng, true);
    run_forward(t, t.c.options);
    run_backward(t, t.c.options);
    const HostTensor fd = fd_dbias(t);
    const double m = max_abs(fd);
    for (std::int64_t e = 0; e < fd.numel(); ++e)
      ASSERT_NEAR(t.dbias.at(e), fd.at(e), 2e-5 * std::max(1.0, m)) << dims << " element " << e;
  }
}

TEST(Bias, MaskedElementsGetZeroGradient) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c = small_case(DType::f32, "bhq");
  c.options.causal = false;
  c.options.window = {2, 1};
  CaseTensors t = make_case(c, s.rng, true);
  run_forward(t, t.c.options);
  run_backward(t, t.c.options);
  int zeros = 0;
  const std::int64_t nk = c.nk, nq = c.nq;
  for (std::int64_t e = 0; e < t.dbias.numel(); ++e) {
    const std::int64_t j = e % nk, i = e / nk % nq;
    const std::int64_t diag = i + nk - nq;
    if (j < diag - 2 || j > diag + 1) {
      ASSERT_EQ(t.dbias.at(e), 0.0) << "element " << e << " is outside the window";
      ++zeros;
    }
  }
  EXPECT_GT(zeros, 0);
}

TEST(Bias, DeterministicGradientIsBitwiseReproducible) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const char* dims : {"hq", "-", "bhq"}) {
    Case c = small_case(DType::bf16, dims);
    c.nq = 70, c.nk = 90, c.d = 32;
    c.options.deterministic = true;
    CaseTensors t = make_case(c, s.rng, true);
    run_forward(t, t.c.options);
    run_backward(t, t.c.options);
    const HostTensor first = t.dbias;
    for (int threads : {1, 2, 3}) {
      Options o = t.c.options;
      o.num_threads = threads;
      run_backward(t, o);
      EXPECT_EQ(first.storage, t.dbias.storage) << dims << ": dbias changed with " << threads << " threads";
    }
  }
}

TEST(Bias, BadArgumentsAreRefusedByNameAndNothingIsWritten) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  CaseTensors t = make_case(small_case(DType::f32, "bhq"), s.rng, true);
  run_forward(t, t.c.options);  // a valid lse for the backward's calls
  auto expect_refused = [&](const char* arg, auto&& edit, bool backward) {
    t.out.poison();
    t.dq.poison();
    t.dbias.poison();
    try {
      if (backward) {
        BackwardArgs a = t.backward_args();
        Options o = t.c.options;
        edit(a, o);
        flatattn::backward(a, o);
      } else {
        ForwardArgs a = t.forward_args();
        a.lse = {};
        Options o = t.c.options;
        o.return_lse = false;
        BackwardArgs b;
        b.bias = a.bias;
        edit(b, o);
        a.bias = b.bias;
        flatattn::forward(a, o);
      }
      ADD_FAILURE() << arg << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), arg) << e.what();
    }
    EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << arg << ": out was written";
    EXPECT_EQ(t.dq.count_nonfinite(), t.dq.numel()) << arg << ": dq was written";
    EXPECT_EQ(t.dbias.count_nonfinite(), t.dbias.numel()) << arg << ": dbias was written";
  };
  HostTensor wrong_shape = HostTensor::make(DType::f32, {2, 3, t.c.nq, t.c.nk});
  HostTensor wrong_keys = HostTensor::make(DType::f32, {1, 1, 1, t.c.nk + 1});
  HostTensor ints = HostTensor::make(DType::i32, t.bias.shape);
  HostTensor f16 = HostTensor::make(DType::f16, t.bias.shape);
  for (bool bwd : {false, true}) {
    expect_refused("bias", [&](BackwardArgs& a, Options&) { a.bias = wrong_shape.view(); a.dbias = {}; }, bwd);
    expect_refused("bias", [&](BackwardArgs& a, Options&) { a.bias = wrong_keys.view(); a.dbias = {}; }, bwd);
    expect_refused("bias", [&](BackwardArgs& a, Options&) { a.bias = ints.view(); a.dbias = {}; }, bwd);
    expect_refused("bias", [&](BackwardArgs& a, Options&) { a.bias.device = Device::cuda(0); }, bwd);
    expect_refused("bias", [&](BackwardArgs& a, Options&) { std::swap(a.bias.stride[2], a.bias.stride[3]); }, bwd);
    expect_refused("bias", [&](BackwardArgs&, Options& o) { o.softcap = 30.f; }, bwd);
    expect_refused("bias", [&](BackwardArgs&, Options& o) { o.dropout_p = 0.1f; }, bwd);
    expect_refused("bias", [&](BackwardArgs& a, Options&) { a.bias.rank = 3; }, bwd);
  }
  HostTensor slopes = HostTensor::make(DType::f32, {t.c.hq});
  expect_refused("bias", [&](BackwardArgs& a, Options&) { a.alibi_slopes = slopes.view(); }, true);
  expect_refused("dbias", [&](BackwardArgs& a, Options&) { a.bias = {}; }, true);
  expect_refused("dbias", [&](BackwardArgs& a, Options&) { a.dbias = wrong_keys.view(); }, true);
  expect_refused("dbias", [&](BackwardArgs& a, Options&) { a.dbias = f16.view(); }, true);
  expect_refused("dbias", [&](BackwardArgs& a, Options&) { a.dbias = a.bias; }, true);
}

// Rows that see one key (causal with window (0, -1)): the exact dS is 0, so a kernel's dbias is nothing but
// the fp32 noise of dP_ij - D_i (D_i from the stored O). The yardstick allows for that noise (the dbias of the
// fp32 formulation and 2 x the summed dS noise) -- and no more: an error a few times the bound still fails.
TEST(Bias, SingleKeyRowsDbiasIsJudgedByItsNoise) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::bf16, DType::f16}) {
    Case c = small_case(dt, "h");
    c.nq = 65, c.nk = 85, c.d = 96;
    c.bias_dtype = DType::f32;
    c.options.window = {0, -1};
    CaseTensors t = make_case(c, s.rng, true);
    Options o = t.c.options;
    run_forward(t, o);
    run_backward(t, o);
    const BackwardOracle ref = oracle_backward(t);
    const BackwardYardstick y = naive_backward(t, ref);
    EXPECT_GT(y.noise_dbias, 0.0) << t.c.name();
    EXPECT_EQ(max_abs(ref.dbias), 0.0) << "single-key rows: the exact dbias is 0";
    const Verdict v = judge_dbias(t, ref, y);
    EXPECT_TRUE(v.pass) << t.c.name() << ": " << v.detail();
    HostTensor bad = t.dbias;
    bad.set(0, bad.at(0) + 4 * v.bound);
    std::swap(t.dbias, bad);
    EXPECT_FALSE(judge_dbias(t, ref, y).pass) << "a planted error of 4x the bound passed";
  }
}
