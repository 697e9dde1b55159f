// The oracle runs blocks of rows (and, in the backward, of keys) on OpenMP threads (src/reference/parallel.h)
// and keeps the sums across them (dK, dV over rows and heads, dsinks over b and i, dbias over its broadcast
// dims) in the single-threaded order: its outputs must be bitwise the same whatever the thread count. Forward (both precisions, with |V|), backward
// (both precisions) and the KV-cache oracle, each with 1 and with several threads, compared byte for byte.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "src/check/case.h"
#include "src/check/kv_case.h"
#include "src/check/oracle.h"
#include "src/reference/parallel.h"
#include "src/reference/reference_kvcache.h"

using namespace flatattn;
using namespace flatattn::check;

namespace {

constexpr int kThreads = 5;  // not a divisor of the task counts below: uneven shares
constexpr int kRepeats = 3;  // runs on kThreads threads per case (the tasks' finishing order varies per run)

/// fn() with omp_set_num_threads(n), the previous count restored after.
template <class F>
auto with_threads(int n, F&& fn) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(n);
  auto r = fn();
  omp_set_num_threads(before);
  return r;
}

/// Byte-for-byte equality of two tensors (NaN poison and padding included: an unwritten element shows).
void expect_same_bits(const HostTensor& a, const HostTensor& b, const std::string& what) {
  ASSERT_EQ(a.shape, b.shape) << what;
  ASSERT_EQ(a.bytes(), b.bytes()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.bytes()), 0) << what << ": differs between 1 and " << kThreads << " threads";
}

/// The cases (each feature where the library accepts it): varlen GQA with sinks and a bias broadcast over (B, Hq),
/// then with ALiBi (B, Hq) and a window instead of the bias; batched MQA with sinks and a bias broadcast over
/// (B, Hq, Nq) (every (b, h, i) adds into one row of dbias), then with dropout and softcap instead; bf16 so that
/// Precision::input rounds.
std::vector<Case> cases() {
  std::vector<Case> v;
  Case c;
  c.dtype = DType::bf16;
  c.varlen = true;
  c.seqlens_q = {5, 0, 61, 9, 33, 2};  // uneven tasks: they finish out of order
  c.seqlens_k = {7, 3, 64, 12, 0, 40};
  c.batch = 6, c.nq = 61, c.nk = 64, c.hq = 6, c.hkv = 2, c.d = 24;
  c.sinks = true;
  c.bias_dims = "q";
  c.options.causal = true;
  v.push_back(c);
  Case a = c;
  a.bias_dims.clear();
  a.alibi = 2;
  a.options.causal = false;
  a.options.window = {4, 3};
  v.push_back(a);
  Case m;
  m.dtype = DType::bf16;
  m.batch = 3, m.nq = 45, m.nk = 50, m.hq = 4, m.hkv = 1, m.d = 16;
  m.sinks = true;
  m.bias_dims = "-";
  m.bias_dtype = DType::f32;
  v.push_back(m);
  Case d = m;
  d.bias_dims.clear();
  d.options.softcap = 5.f;
  d.options.dropout_p = 0.2f;
  d.options.dropout_seed = 7;
  v.push_back(d);
  return v;
}

}  // namespace

TEST(ReferenceThreads, ForwardAndBackwardAreBitwiseTheSameForAnyThreadCount) {
  ASSERT_GT(with_threads(kThreads, [] { return ref::task_threads(100); }), 1) << "the parallel path must run";
  const std::uint64_t seed = fresh_seed();
  for (const Case& c : cases()) {
    const std::string what = c.name() + " FLATATTN_SEED=" + std::to_string(seed);
    CaseTensors t = make_case(c, seed, /*with_backward=*/true);
    const ForwardOracle f1 = with_threads(1, [&] { return oracle_forward(t); });
    EXPECT_EQ(f1.out.count_nonfinite(), 0) << what << ": every output row is written";
    for (int rep = 0; rep < kRepeats; ++rep) {
      const ForwardOracle fn = with_threads(kThreads, [&] { return oracle_forward(t); });
      expect_same_bits(f1.out, fn.out, what + " out");
      expect_same_bits(f1.lse, fn.lse, what + " lse");
      expect_same_bits(f1.naive_out, fn.naive_out, what + " naive_out (Precision::input)");
      expect_same_bits(f1.pv_abs, fn.pv_abs, what + " pv_abs");
    }
    for (auto [name, run] : {std::pair{"f64", &oracle_backward}, std::pair{"input", &naive_lowp_backward}}) {
      const BackwardOracle b1 = with_threads(1, [&] { return run(t); });
      const std::string w = what + " backward " + name;
      for (const HostTensor* x : {&b1.dq, &b1.dk, &b1.dv, &b1.dsinks, &b1.dbias})
        if (!x->shape.empty()) EXPECT_EQ(x->count_nonfinite(), 0) << w << ": every gradient is written";
      for (int rep = 0; rep < kRepeats; ++rep) {
        const BackwardOracle bn = with_threads(kThreads, [&] { return run(t); });
        expect_same_bits(b1.dq, bn.dq, w + " dq");
        expect_same_bits(b1.dk, bn.dk, w + " dk");
        expect_same_bits(b1.dv, bn.dv, w + " dv");
        expect_same_bits(b1.dsinks, bn.dsinks, w + " dsinks");
        expect_same_bits(b1.dbias, bn.dbias, w + " dbias");
      }
    }
  }
}

TEST(ReferenceThreads, KvCacheOracleIsBitwiseTheSameForAnyThreadCount) {
  std::mt19937_64 rng(fresh_seed());
  KvCase c;
  c.dtype = DType::bf16;
  c.batch = 4, c.nq = 3, c.nnew = 3, c.hq = 6, c.hkv = 2, c.d = 32;
  c.seqlens = {40, 0, 130, 7};
  c.page_size = 16;
  c.rotary_dim = 16;
  c.sinks = true;
  c.options.causal = true;
  c.options.return_lse = true;
  const KvCaseTensors before = make_kv_case(c, rng);
  for (ref::Precision precision : {ref::Precision::f64, ref::Precision::input}) {
    auto run = [&] {
      KvCaseTensors t = before;
      if (precision == ref::Precision::f64) {
        t.out = HostTensor::make(DType::f64, before.out.shape);
        t.lse = HostTensor::make(DType::f64, before.lse.shape);
      }
      t.out.poison();
      t.lse.poison();
      ref::forward_kvcache(t.args(), c.options, precision);
      return t;
    };
    const KvCaseTensors t1 = with_threads(1, run), tn = with_threads(kThreads, run);
    const std::string what = c.name() + (precision == ref::Precision::f64 ? " f64" : " input");
    EXPECT_EQ(t1.out.count_nonfinite(), 0) << what << ": every output row is written";
    expect_same_bits(t1.out, tn.out, what + " out");
    expect_same_bits(t1.lse, tn.lse, what + " lse");
    expect_same_bits(t1.k_cache, tn.k_cache, what + " k_cache");
    expect_same_bits(t1.v_cache, tn.v_cache, what + " v_cache");
  }
}

TEST(ReferenceThreads, InsideAParallelRegionTheOracleRunsOnTheCallersThread) {
  // A caller that is itself parallel (the CPU tests' sweeps, an OpenMP harness) gets no nested team.
  int inner = 0, team = 0;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    inner = ref::task_threads(1000), team = omp_get_num_threads();
  }
  if (team > 1) EXPECT_EQ(inner, 1);
  // And the results there are the single-threaded ones.
  Case c = cases()[0];
  CaseTensors t = make_case(c, fresh_seed(), /*with_backward=*/true);
  const BackwardOracle alone = with_threads(1, [&] { return oracle_backward(t); });
  std::vector<BackwardOracle> nested(2);
#pragma omp parallel for num_threads(2)
  for (int i = 0; i < 2; ++i) nested[i] = oracle_backward(t);
  for (const BackwardOracle& n : nested) {
    expect_same_bits(alone.dq, n.dq, "nested dq");
    expect_same_bits(alone.dbias, n.dbias, "nested dbias");
    expect_same_bits(alone.dsinks, n.dsinks, "nested dsinks");
  }
}
