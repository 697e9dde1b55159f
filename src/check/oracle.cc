#include "src/check/oracle.h"

#include <algorithm>
#include <cmath>

#include "src/check/sparse_case.h"
#include "src/reference/parallel.h"
#include "src/reference/reference.h"

namespace flatattn::check {

ForwardOracle oracle_forward(const CaseTensors& t) {
  ForwardOracle o;
  o.out = HostTensor::make(DType::f64, t.out.shape);
  o.lse = HostTensor::make(DType::f64, t.lse.shape);
  o.naive_out = HostTensor::make(t.c.dtype, t.out.shape);
  o.out.poison();
  o.lse.poison();
  o.naive_out.poison();
  Options opt = t.c.options;
  opt.return_lse = true;
  ForwardArgs a;
  a.q = t.q.view();
  a.k = t.k.view();
  a.v = t.v.view();
  a.varlen = t.varlen();
  a.out = o.out.view();
  a.lse = o.lse.view();
  if (t.c.alibi) a.alibi_slopes = t.alibi.view();
  if (t.c.sinks) a.sinks = t.sinks.view();
  if (t.c.has_bias()) a.bias = t.bias.view();
  a.block_sparse = sparse_args(t);
  a.local_global = local_global_args(t);
  ref::forward(a, opt, ref::Precision::f64);
  a.out = o.naive_out.view();
  a.lse = {};
  opt.return_lse = false;
  ref::forward(a, opt, ref::Precision::input);
  // sum_j P_ij |V_jd|: the oracle's own P on |V| (exact in any dtype), dropout's and the sinks' P included.
  HostTensor v_abs = t.v;
  ref::parallel_ranges(v_abs.numel(), 1 << 15, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = lo; i < hi; ++i) v_abs.set(i, std::abs(v_abs.at(i)));
  });
  o.pv_abs = HostTensor::make(DType::f64, t.out.shape);
  o.pv_abs.poison();
  a.v = v_abs.view();
  a.out = o.pv_abs.view();
  ref::forward(a, opt, ref::Precision::f64);
  return o;
}

double lse_logit_rounding(const CaseTensors& t) {
  auto max_row_norm = [](const HostTensor& x, std::int64_t d) {
    double best = 0.0;
    for (std::int64_t r = 0; r < x.numel() / d; ++r) {
      double s = 0.0;
      for (std::int64_t e = 0; e < d; ++e) s += x.at(r * d + e) * x.at(r * d + e);
      best = std::max(best, s);
    }
    return std::sqrt(best);
  };
  const std::int64_t d = t.c.d;
  const double scale = t.c.options.softmax_scale ? std::abs(*t.c.options.softmax_scale) : 1.0 / std::sqrt(double(d));
  return 16.0 * 0x1p-24 * scale * max_row_norm(t.q, d) * max_row_norm(t.k, d);
}

namespace {
/// ref::backward of case t at `precision` into dq/dk/dv of dtype `dtype` (poisoned first).
BackwardOracle reference_backward(const CaseTensors& t, ref::Precision precision, DType dtype) {
  BackwardOracle o;
  o.dq = HostTensor::make(dtype, t.dq.shape);
  o.dk = HostTensor::make(dtype, t.dk.shape);
  o.dv = HostTensor::make(dtype, t.dv.shape);
  o.dq.poison();
  o.dk.poison();
  o.dv.poison();
  if (t.c.sinks) {
    o.dsinks = HostTensor::make(dtype == DType::f64 ? DType::f64 : DType::f32, {t.c.hq});
    o.dsinks.poison();
  }
  if (t.c.has_bias()) {  // f64 for the oracle, else the bias's dtype (the input-precision yardstick)
    o.dbias = HostTensor::make(dtype == DType::f64 ? DType::f64 : t.bias.dtype, t.bias.shape);
    o.dbias.poison();
  }
  // out and lse are validated but unused by the reference; pass f64 placeholders of the right shapes.
  HostTensor out = HostTensor::make(DType::f64, t.out.shape), lse = HostTensor::make(DType::f64, t.lse.shape);
  BackwardArgs a;
  a.dout = t.dout.view();
  a.q = t.q.view();
  a.k = t.k.view();
  a.v = t.v.view();
  a.out = out.view();
  a.lse = lse.view();
  a.dq = o.dq.view();
  a.dk = o.dk.view();
  a.dv = o.dv.view();
  a.varlen = t.varlen();
  if (t.c.alibi) a.alibi_slopes = t.alibi.view();
  if (t.c.sinks) {
    a.sinks = t.sinks.view();
    a.dsinks = o.dsinks.view();
  }
  if (t.c.has_bias()) {
    a.bias = t.bias.view();
    a.dbias = o.dbias.view();
  }
  a.block_sparse = sparse_args(t);
  a.local_global = local_global_args(t);
  ref::backward(a, t.c.options, precision);
  return o;
}
}  // namespace

BackwardOracle oracle_backward(const CaseTensors& t) { return reference_backward(t, ref::Precision::f64, DType::f64); }

BackwardOracle naive_lowp_backward(const CaseTensors& t) {
  return reference_backward(t, ref::Precision::input, t.c.dtype);
}

}  // namespace flatattn::check
