// Naive attention gradients computed entirely in fp32 (fp32 products and fp32 accumulation, S and P
// materialized): autograd through naive attention as a framework runs it in fp32. The yardstick for
// fp32 gradients next to the oracle's input-precision backward, which accumulates in double.
#pragma once

#include "src/check/case.h"
#include "src/check/oracle.h"

namespace flatattn::check {

/// How P and D_i are formed.
/// autograd: P = softmax(S) row by row, D_i = sum_j P_ij dP_ij (what autograd through softmax does).
/// lse:      FlashAttention-2's formulation, unfused, on the backward's own inputs: P = exp(S - t.lse) and
///           D_i = sum_d dO_id t.out_id, with the forward's fp32 LSE and O (run the forward first). The
///           rounding those inputs carry is not the backward's doing: with |S| ~ 1e4 the fp32 LSE alone is
///           off by up to half an ulp (~5e-4), which scales a whole row of P by up to 1 +- 5e-4. This is
///           the yardstick for what tiling and fusion add.
/// lse_storage: lse, with P and dS rounded to the storage dtype before the products that take them (P V^T's
///           transpose for dV, dS K for dQ, dS^T Q for dK), as FlashAttention-2's kernels feed their fp16/bf16
///           tensor cores (Dao 2023, Algorithm 2, lines 13-16). For f16/bf16 the same unfused formulation in the
///           input precision; its dS rounding (u |dS_ij|) is a draw that the fp32 `lse` yardstick lacks and that
///           dominates dQ and dK at small D (one product per key). For f32 it is `lse`.
enum class NaiveMethod { autograd, lse, lse_storage };

/// Gradients plus, per gradient, the largest first-order rounding noise that forming dS = P o (dP - D_i)
/// in fp32 passes on: noise(dS_ij) = u P_ij (sum_d |dO_id V_jd| + sum_d |dO_id O_id|) (u = 2^-24; the
/// D_i term only for NaiveMethod::lse), propagated as dq_i: scale sum_j noise_ij |K_j|, dk_j: scale
/// sum_i noise_ij |Q_i|. Where P is one-hot dP - D_i cancels and dq, dk are nothing but this noise
/// (large logits), so a bound on them needs it: any two fp32 implementations differ by about this much.
/// With a bias, dbias (f32, the bias's shape) is dS summed over the bias's broadcast dims in index order, and
/// dbias_noise the largest such sum of the dS noise.
struct NaiveFp32Grads : BackwardOracle {
  double dq_noise = 0, dk_noise = 0, dbias_noise = 0;
};

/// D_i = rowsum(dO_i o O_i) as every backward(dO, Q, K, V, O, LSE) forms it (FlashAttention-2's preprocessing
/// step) from the stored O, i.e. O rounded to the storage dtype: fp32 products summed in index order. The one
/// definition of the checks' stored-O D_i (the `lse` yardstick here, the dsinks yardstick of yardstick.cc).
/// Its error against the exact sum_j P_ij dP_ij is up to u sum_d |dO_id O_id| (u: the storage dtype's unit
/// roundoff, from O's rounding; docs/design.md) plus O's own error; abs_sum (if not null) receives
/// sum_d |dO_id O_id| in fp64.
float stored_di(const float* dout, const float* out, std::int64_t d, double* abs_sum = nullptr);

/// dq, dk, dv (and dbias) (f32 tensors shaped like t's) of case t, from t.q/k/v/dout; the case's options
/// apply. The noise fields are computed for every input dtype: whatever the storage, a kernel forms dS in
/// fp32, and with large logits (one-hot rows) dq, dk and dbias are that noise alone. Rows run in parallel
/// (OpenMP), each element's sums in index order, so the result does not depend on the thread count.
NaiveFp32Grads naive_fp32_backward(const CaseTensors& t, NaiveMethod method);

}  // namespace flatattn::check
