// The low-precision yardsticks of the checks beyond the oracle's naive_lowp (oracle.h): for fp32 forwards
// the engine's naive fp32 attention, for backwards the unfused FA2 formulation and (fp32) naive autograd
// with their dS rounding noise. docs/design.md's rule compares a kernel's error with the error of naive
// attention in the input precision; where naive attention can be computed in several honest ways, the
// worse one is the yardstick. Shared by the CPU and CUDA tests and `flatattn check`.
#pragma once

#include <array>

#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"

namespace flatattn::check {

/// oracle_forward(t), except that for f32 the naive yardstick is the worse of the oracle's naive_out (fp32
/// rounding of each step, double accumulation) and cpu::naive_forward (fp32 GEMMs, fp32 accumulation: naive
/// attention as a framework computes it in fp32; its non-finite count goes to naive_fp32_nonfinite). With
/// large logits the fp32 accumulation of S = QK^T alone moves P by ~1e-3, which the double-accumulating
/// yardstick does not show.
ForwardOracle forward_yardstick(const CaseTensors& t);

/// A forward output under the rule: judge(out, o.out, &o.naive_out, dtype, rel_tol) with the floor raised to
/// 2 u max(|ref| + sum_j P_ij |V_jd|) (o.pv_abs; docs/design.md): every fused kernel rounds P to the storage
/// dtype before P V (and O at the end), which moves O by up to u sum_j P_ij |V_jd| (+ u |O|) whatever the
/// naive yardstick's own error is -- near one-hot rows make that error 0 and 2x it no bound at all.
Verdict judge_forward(const HostTensor& out, const ForwardOracle& o, DType dtype, double rel_tol = 0.0);

/// The yardstick of a backward check: per gradient the worse of naive input-precision gradients and the
/// unfused FA2 formulation on the stored O and LSE, and an absolute allowance per gradient for the fp32
/// rounding noise of dS (naive_fp32.h: NaiveFp32Grads).
struct BackwardYardstick {
  BackwardOracle naive;
  double noise_dq = 0, noise_dk = 0, noise_dbias = 0;
};

/// Per gradient the worst of ref::backward with Precision::input (naive_lowp_backward) and the unfused fp32
/// FA2 formulation on the case's stored out/lse (run the forward first: t.out and t.lse are read); for f32
/// also naive fp32 autograd, with their dS rounding noise. ref: oracle_backward(t), which picks the worse.
BackwardYardstick naive_backward(const CaseTensors& t, const BackwardOracle& ref);

/// The verdict of one gradient.
struct GradientVerdict {
  const char* name;  ///< "dq", "dk", "dv"
  Verdict v;
  double noise;      ///< the dS rounding noise allowed for (2 x noise is in v.bound; 0 for dv)
};

/// dq, dk, dv of t (after the backward) against ref with the yardstick y under the rule (output dtype
/// t.c.dtype), each bound raised by 2 x its dS noise.
std::array<GradientVerdict, 3> judge_backward(const CaseTensors& t, const BackwardOracle& ref,
                                              const BackwardYardstick& y);

/// The sinks' gradient of t (after a backward with sinks) against ref.dsinks, with the worse of the
/// input-precision reference's dsinks and the fp32 formulation on the stored O and LSE (y.naive.dsinks) as the
/// yardstick, under the rule for the input dtype (D_i comes from
/// O and dO in that dtype).
Verdict judge_dsinks(const CaseTensors& t, const BackwardOracle& ref, const BackwardYardstick& y);

}  // namespace flatattn::check

namespace flatattn::check {

/// The bias's gradient of t (after a backward with a bias and dbias) against ref.dbias, with the worse of the
/// input-precision reference's dbias and the fp32 formulation's (y.naive.dbias) as the yardstick, under the
/// rule for the bias's dtype (dS is rounded to it), the bound raised by 2 x the summed dS noise (y.noise_dbias).
Verdict judge_dbias(const CaseTensors& t, const BackwardOracle& ref, const BackwardYardstick& y);

}  // namespace flatattn::check
