// Row softmax on mma accumulator fragments. A thread holds, per 16-row m-tile, two rows (g and g+8)
// and two columns per 8-wide n-tile; the four threads of a quad share each row, so row reductions
// are two xor-shuffles. Values are logits in log2 units; p = exp2(x * mul - max * mul).
//   Flash (online, FlashAttention-2 Alg. 1): per key block, a new running max rescales the running sum
//   and the output accumulator once (alpha), the output is divided by the sum once at the end.
//   FLAT (exact, Kao et al. Sec. 4): the max over the whole row is known before any exp, no rescale.
// A row whose logits are all -inf (fully masked) keeps max = -inf; it gets p = 0, sum 0, O = 0,
// LSE = -inf.
#pragma once

#include <cmath>

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

FLATATTN_DEVICE float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

FLATATTN_DEVICE float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

FLATATTN_DEVICE float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/// max * mul, or 0 for an all -inf row (so exp2(-inf - 0) = 0 instead of NaN).
FLATATTN_DEVICE float scaled_max(float mx, float mul) { return mx == -INFINITY ? 0.f : mx * mul; }

/// Row max of one m-tile row half (h = 0: row g, h = 1: row g+8) of a fragment array, starting at mx.
template <int kNT>
FLATATTN_DEVICE float row_max(const float (&s)[kNT][4], int h, float mx) {
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
  return mx;
}

/// s <- exp2(s * mul - ms) for one row half; returns this thread's partial row sum.
template <int kNT>
FLATATTN_DEVICE float exp_row(float (&s)[kNT][4], int h, float mul, float ms) {
  float sum = 0.f;
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt) {
    s[nt][2 * h] = ex2(fmaf(s[nt][2 * h], mul, -ms));
    s[nt][2 * h + 1] = ex2(fmaf(s[nt][2 * h + 1], mul, -ms));
    sum += s[nt][2 * h] + s[nt][2 * h + 1];
  }
  return sum;
}

/// Flash online step: updates the running max m and (thread-partial) sum l with the block's logits s,
/// turns s into probabilities and rescales the output accumulator o by exp2((m_old - m_new) * mul).
template <int kMT, int kNT, int kDT>
FLATATTN_DEVICE void online_softmax(float (&s)[kMT][kNT][4], float (&o)[kMT][kDT][4], float (&m)[kMT][2],
                                    float (&l)[kMT][2], float mul) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float mx = quad_max(row_max(s[mt], h, m[mt][h]));
      const float ms = scaled_max(mx, mul);
      const float alpha = ex2(m[mt][h] * mul - ms);  // 0 on the first visible block (m_old = -inf)
      m[mt][h] = mx;
      l[mt][h] = l[mt][h] * alpha + exp_row(s[mt], h, mul, ms);
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt) {
        o[mt][dt][2 * h] *= alpha;
        o[mt][dt][2 * h + 1] *= alpha;
      }
    }
  }
}

/// End of both dataflows: the full row sums, the output normalization factor (0 for an empty row)
/// and the natural-log LSE ((max * mul + log2 sum) * ln 2, -inf for an empty row).
template <int kMT>
FLATATTN_DEVICE void finalize_rows(const float (&m)[kMT][2], float (&l)[kMT][2], float (&inv)[kMT][2],
                                   float (&lse)[kMT][2], float mul) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float sum = quad_sum(l[mt][h]);
      const bool empty = !(sum > 0.f) || m[mt][h] == -INFINITY;
      inv[mt][h] = empty ? 0.f : 1.f / sum;
      lse[mt][h] = empty ? -INFINITY : (m[mt][h] * mul + log2f(sum)) * 0.6931471805599453f;
    }
  }
}

}  // namespace flatattn::cuda
