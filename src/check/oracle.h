// The fp64 oracle (src/reference) and its input-precision run (the rule's naive_lowp yardstick) on the
// tensors of a case.
#pragma once

#include "src/check/case.h"
#include "src/check/host_tensor.h"

namespace flatattn::check {

/// Oracle outputs of a case's forward: out (f64, out's shape), lse (f64, lse's shape), and naive_out: naive
/// attention in the input dtype (ref::Precision::input), the rule's yardstick. naive_fp32_nonfinite:
/// filled by forward_yardstick (yardstick.h) when it ran the engine's fp32 naive attention. pv_abs (f64, out's
/// shape): sum_j P_ij |V_jd| in fp64 (the oracle on |V|), the scale of the P-rounding term of the rule's floor
/// (judge_forward, docs/design.md).
struct ForwardOracle {
  HostTensor out, lse, naive_out, pv_abs;
  std::int64_t naive_fp32_nonfinite = 0;
};
ForwardOracle oracle_forward(const CaseTensors& t);

/// The absolute error that the fp32 rounding of a case's logits can put in its LSE, for lse_tolerance (rule.h):
/// 16 * 2^-24 * |scale| * max_i |q_i| * max_j |k_j| (Cauchy-Schwarz bounds sum_d |q_id k_jd|, the scale of a dot
/// product's rounding error; a softcap's derivative is <= 1). It is the floor of the LSE tolerance for every case:
/// a row whose LSE is small while its dot products cancel (softcap; or large q, k below lse_tolerance's sd > 4
/// threshold, e.g. sd 3, D = 80, with few visible keys: CI's fuzz, seed 8142079857769 case 59, 1.15e-5 against a
/// bound of 1e-5) carries that rounding in full.
double lse_logit_rounding(const CaseTensors& t);

/// Gradients of a backward: dq, dk, dv shaped like the case's.
struct BackwardOracle {
  HostTensor dq, dk, dv;
  HostTensor dsinks;  ///< (Hq) the sinks' gradient, for a case with sinks (else empty)
  HostTensor dbias;   ///< the bias's gradient (the bias's shape), for a case with a bias (else empty)
};
/// Oracle gradients (f64) of case t (dout, q, k, v; the case's options).
BackwardOracle oracle_backward(const CaseTensors& t);
/// The naive reference's gradients of case t in the input dtype (ref::Precision::input: inputs rounded,
/// each step rounded to the dtype; the rule's low-precision yardstick), in the case's dtype.
BackwardOracle naive_lowp_backward(const CaseTensors& t);

}  // namespace flatattn::check
