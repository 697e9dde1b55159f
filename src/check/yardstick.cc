#include "src/check/yardstick.h"

#include <algorithm>
#include <cmath>
#include <vector>
#include <tuple>
#include <utility>

#include "src/check/naive_fp32.h"
#include "src/core/validate.h"
#include "src/cpu/naive.h"

namespace flatattn::check {

ForwardOracle forward_yardstick(const CaseTensors& t) {
  ForwardOracle o = oracle_forward(t);
  if (t.c.dtype != DType::f32) return o;
  HostTensor naive = HostTensor::poisoned_like(t.out, DType::f32);
  ForwardArgs a = t.forward_args();
  a.out = naive.view();
  a.lse = {};
  Options opt = t.c.options;
  opt.return_lse = false;
  const ValidatedForward v = validate_forward(a, opt);
  cpu::naive_forward(v.problem, v.tensors);
  o.naive_fp32_nonfinite = judge(naive, o.out, nullptr, DType::f32).nonfinite;
  keep_worse_yardstick(o.naive_out, std::move(naive), o.out);
  return o;
}

Verdict judge_forward(const HostTensor& out, const ForwardOracle& o, DType dtype, double rel_tol) {
  return judge(out, o.out, &o.naive_out, dtype, rel_tol, &o.pv_abs);
}

namespace {

/// The sinks' gradient as the unfused FA2 formulation computes it from the backward's own inputs, in fp32:
/// D_i = rowsum(dO_i o O_i) with the stored O (in f16/bf16 its rounding moves D_i by up to u sum_d |dO_id O_id|,
/// which no backward(dO, Q, K, V, O, LSE) can undo and the softmax-form yardstick does not see), then
/// dsink_h = -sum_i e^(sink_h - LSE_i) D_i over the stored LSE.
HostTensor dsinks_from_stored(const CaseTensors& t) {
  const Case& c = t.c;
  HostTensor g = HostTensor::make(DType::f32, {c.hq});
  std::int64_t q0 = 0;
  std::vector<float> acc(c.hq, 0.f);
  for (std::int64_t b = 0; b < c.batch; ++b) {
    const std::int64_t nq = c.varlen ? c.seqlens_q[b] : c.nq;
    for (std::int64_t h = 0; h < c.hq; ++h)
      for (std::int64_t i = 0; i < nq; ++i) {
        const std::int64_t row = c.varlen ? (q0 + i) * c.hq + h : (b * c.nq + i) * c.hq + h;
        std::vector<float> go(c.d), o(c.d);
        for (std::int64_t d = 0; d < c.d; ++d) go[d] = float(t.dout.at(row * c.d + d)), o[d] = float(t.out.at(row * c.d + d));
        const float di = stored_di(go.data(), o.data(), c.d);
        const float lse = float(t.lse.at(c.varlen ? h * t.lse.shape[1] + q0 + i : (b * c.hq + h) * c.nq + i));
        if (std::isinf(lse) && lse < 0) continue;
        acc[h] -= std::exp(float(t.sinks.at(h)) - lse) * di;
      }
    if (c.varlen) q0 += nq;
  }
  for (std::int64_t h = 0; h < c.hq; ++h) g.set(h, acc[h]);
  return g;
}

}  // namespace

BackwardYardstick naive_backward(const CaseTensors& t, const BackwardOracle& r) {
  BackwardYardstick y;
  BackwardOracle& o = y.naive;
  o = naive_lowp_backward(t);
  // Per gradient, the worst of the input-precision yardstick and the unfused FA2 formulation on the
  // backward's own inputs (D_i from the stored O: in fp16/bf16 O's rounding moves D_i by up to
  // u * sum_d |dO_id O_id|, which no implementation of backward(dO, Q, K, V, O, LSE) can undo and which
  // the softmax-form yardstick does not see; naive_fp32.h says more). fp32 also takes naive fp32 autograd,
  // f16/bf16 the same formulation with P and dS in the storage dtype (FA2's kernels); every dtype the dS
  // rounding noise.
  const bool fp32 = t.c.dtype == DType::f32;
  for (NaiveMethod m : {NaiveMethod::autograd, NaiveMethod::lse, NaiveMethod::lse_storage}) {
    if (m == (fp32 ? NaiveMethod::lse_storage : NaiveMethod::autograd)) continue;
    NaiveFp32Grads f = naive_fp32_backward(t, m);
    // Every dtype: a kernel forms dS in fp32 whatever the storage, and where rows are one-hot (large logits)
    // or hold one key, dq, dk and dbias are that noise alone.
    y.noise_dq = std::max(y.noise_dq, f.dq_noise);
    y.noise_dk = std::max(y.noise_dk, f.dk_noise);
    y.noise_dbias = std::max(y.noise_dbias, f.dbias_noise);
    keep_worse_yardstick(o.dq, std::move(f.dq), r.dq);
    keep_worse_yardstick(o.dk, std::move(f.dk), r.dk);
    keep_worse_yardstick(o.dv, std::move(f.dv), r.dv);
    if (t.c.has_bias()) keep_worse_yardstick(o.dbias, std::move(f.dbias), r.dbias);
  }
  if (t.c.sinks) keep_worse_yardstick(o.dsinks, dsinks_from_stored(t), r.dsinks);
  return y;
}

std::array<GradientVerdict, 3> judge_backward(const CaseTensors& t, const BackwardOracle& ref,
                                              const BackwardYardstick& y) {
  std::array<GradientVerdict, 3> out;
  int i = 0;
  for (auto [got, r, n, noise, name] :
       {std::tuple{&t.dq, &ref.dq, &y.naive.dq, y.noise_dq, "dq"}, std::tuple{&t.dk, &ref.dk, &y.naive.dk, y.noise_dk, "dk"},
        std::tuple{&t.dv, &ref.dv, &y.naive.dv, 0.0, "dv"}}) {
    Verdict v = judge(*got, *r, n, t.c.dtype);
    v.bound += 2.0 * noise;
    v.pass = v.nonfinite == 0 && v.max_err <= v.bound;
    out[i++] = {name, v, noise};
  }
  return out;
}

Verdict judge_dbias(const CaseTensors& t, const BackwardOracle& ref, const BackwardYardstick& y) {
  Verdict v = judge(t.dbias, ref.dbias, &y.naive.dbias, t.dbias.dtype);
  v.bound += 2.0 * y.noise_dbias;
  v.pass = v.nonfinite == 0 && v.max_err <= v.bound;
  return v;
}

Verdict judge_dsinks(const CaseTensors& t, const BackwardOracle& ref, const BackwardYardstick& y) {
  return judge(t.dsinks, ref.dsinks, &y.naive.dsinks, t.c.dtype);
}

}  // namespace flatattn::check
