// Row softmax on mma accumulator fragments. A thread holds, per 16-row m-tile, two rows (g and g+8)
// and two columns per 8-wide n-tile; the four threads of a quad share each row, so row reductions
// are two xor-shuffles. Values are logits in log2 units; p = exp2(x * mul - max * mul).
//   Flash (online, FlashAttention-2 Alg. 1): per key block, a new running max rescales the running sum
//   and the output accumulator once (alpha), the output is divided by the sum once at the end; the
//   rescale can be lazy (only when the max grows by more than 2^8, the idea of FlashAttention-4's
//   conditional rescaling), which leaves the result exact.
//   FLAT (exact, Kao et al. Sec. 4): the max over the whole row is known before any exp, no rescale.
// A row whose logits are all -inf (fully masked) keeps max = -inf; it gets p = 0, sum 0, O = 0,
// LSE = -inf (with a sink: O = 0, LSE = sink, add_sinks).
#pragma once

#include <cmath>

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

FLATATTN_DEVICE float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

FLATATTN_DEVICE float lg2(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
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

/// Reference-max moves smaller than this (log2 units) are not applied: p may reach 2^8, which fp16/bf16
/// P and fp32 sums hold with unchanged relative precision.
constexpr float kRescaleThreshold = 8.f;

/// Flash online step, row part: updates the reference max m and the (thread-partial) sum l with the
/// block's logits s, turns s into probabilities and returns in alpha the factor exp2((m_old - m) * mul)
/// by which the output accumulator must be rescaled (rescale_o) before this block's P V is added.
/// kLazy: the reference moves only when the block's max exceeds it by more than kRescaleThreshold
/// (always on the first visible block); O and l always share the reference, so the result is the same
/// softmax (O / l and LSE = m + log2 l do not depend on which reference was used). Eager: the reference
/// is the running max and O is rescaled every block (FlashAttention-2). Which one is faster depends on
/// the tile (policy table). Returns whether any of this thread's rows moved.
template <bool kLazy, int kMT, int kNT>
FLATATTN_DEVICE bool online_softmax_rows(float (&s)[kMT][kNT][4], float (&m)[kMT][2], float (&l)[kMT][2],
                                         float (&alpha)[kMT][2], float mul) {
  bool moved = false;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float mx = quad_max(row_max(s[mt], h, -INFINITY));
      const bool move = kLazy ? mx * mul > m[mt][h] * mul + kRescaleThreshold : mx > m[mt][h];
      const float m_new = move ? mx : m[mt][h];
      alpha[mt][h] = move ? ex2((m[mt][h] - m_new) * mul) : 1.f;  // 0 when m was -inf
      moved = moved || move;
      m[mt][h] = m_new;
      l[mt][h] = l[mt][h] * alpha[mt][h] + exp_row(s[mt], h, mul, scaled_max(m_new, mul));
    }
  }
  return moved;
}

/// Flash online step, output part: o *= alpha per row; lazy: the warp skips it when none of its rows
/// moved (`moved` from online_softmax_rows; warp-uniform branch).
template <bool kLazy, int kMT, int kDT>
FLATATTN_DEVICE void rescale_o(float (&o)[kMT][kDT][4], const float (&alpha)[kMT][2], bool moved) {
  if (!kLazy || __any_sync(0xffffffffu, moved)) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[mt][dt][e] *= alpha[mt][e / 2];
  }
}

/// Flash online step (online_softmax_rows, then rescale_o): the block's probabilities in s, O rescaled.
template <bool kLazy, int kMT, int kNT, int kDT>
FLATATTN_DEVICE void online_softmax(float (&s)[kMT][kNT][4], float (&o)[kMT][kDT][4], float (&m)[kMT][2],
                                    float (&l)[kMT][2], float mul) {
  float alpha[kMT][2];
  const bool moved = online_softmax_rows<kLazy>(s, m, l, alpha, mul);
  rescale_o<kLazy>(o, alpha, moved);
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

/// Attention sinks (gpt-oss; Xiao et al., "Efficient Streaming Language Models with Attention Sinks", 2023):
/// a per-head logit `sink` (natural-log units, like the scaled logits) joins each row's softmax denominator
/// and has no value. Applied once per row after finalize_rows (every forward kernel), on the finished LSE
/// L0 and output factor inv, in log2 units with the hardware exp2/log2 like the rest of the softmax:
/// L = log(e^L0 + e^sink) = max + log1p(e^-|L0 - sink|) and inv *= e^(L0 - L) <= 1, so a sink far above
/// the logits cannot overflow. A fully masked row (L0 = -inf) gets O = 0 and LSE = sink. sinks: (Hq) fp32
/// on the device, null: off (one uniform branch per CTA after the main loop; the plain path's cost).
template <int kMT>
FLATATTN_DEVICE void add_sinks(float (&inv)[kMT][2], float (&lse)[kMT][2], const float* sinks, int h) {
  if (sinks == nullptr) return;
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
  const float sk = sinks[h] * kLog2e;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const float a = lse[mt][hh] * kLog2e;
      const float mx = fmaxf(a, sk);
      if (mx == -INFINITY) continue;  // no key and a sink of -inf: the row stays empty
      const float l = mx + lg2(1.f + ex2(-fabsf(a - sk)));
      inv[mt][hh] *= ex2(a - l);  // 0 for an empty row (a = -inf)
      lse[mt][hh] = l * kLn2;
    }
  }
}

}  // namespace flatattn::cuda
