// The split-KV combine: merges the fp32 partials of num_splits > 1 CTAs of one query row by their LSEs (the
// log-sum-exp merge of Milakov & Gimelshein 2018, "Online normalizer calculation for softmax", as used by
// Flash-Decoding): LSE = log sum_s e^{LSE_s}, O = sum_s e^{LSE_s - LSE} O_s; then the attention sink's
// term, the output in the storage dtype and the LSE. One warp per row (b, i, h); a row with a split that
// refused its sequence (kSkippedLseBits) is not written.
#pragma once

#include <cmath>
#include <cstdint>

#include "src/cuda/common/dtype.cuh"
#include "src/cuda/common/seq_rows.h"
#include "src/cuda/decode/decode_params.h"
#include "src/cuda/decode/row_finish.cuh"

namespace flatattn::cuda {

template <class E, int D>
__global__ void __launch_bounds__(128) decode_combine_kernel(const DecodeParams p) {
  using T = typename E::T;
  constexpr int kPer = D / 32;  // columns per lane
  static_assert(D % 64 == 0, "two or more columns per lane, pairs packed");
  constexpr float kLog2e = 1.4426950408889634f;
  const std::int64_t rows_total = static_cast<std::int64_t>(p.batch) * p.nq * p.hq;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * 4 + (threadIdx.x >> 5);
  if (row >= rows_total) return;
  const int lane = threadIdx.x & 31;
  // Rows are (b * Nq + i) * Hq + h (varlen: Nq is the bound, sequence b's rows i < Nq_b).
  const int h = static_cast<int>(row % p.hq);
  const std::int64_t bi = row / p.hq;
  const int i = static_cast<int>(bi % p.nq), b = static_cast<int>(bi / p.nq);
  int q0 = 0;
  if (p.cu_seqlens_q != nullptr) {
    // The same offsets the decode kernel read: a row past Nq_b was never written (nor its partials), and
    // refused offsets give no rows.
    const SeqRows sr = seq_rows(p.cu_seqlens_q, b, p.total_q, p.nq, kMetaCuQ, kMetaMaxQ);
    if (i >= sr.len) return;
    q0 = sr.start;
  }
  float mx = -INFINITY;
  for (int sp = 0; sp < p.num_splits; ++sp) {
    const float v = p.lse_part[sp * rows_total + row];
    if (__float_as_uint(v) == kSkippedLseBits) return;  // the sequence was refused: nothing written
    mx = fmaxf(mx, v);
  }
  float acc[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) acc[e] = 0.f;
  float sum = 0.f;
  const float m2 = mx * kLog2e;
  if (mx != -INFINITY) {
    for (int sp = 0; sp < p.num_splits; ++sp) {
      const float v = p.lse_part[sp * rows_total + row];
      const float w = v == -INFINITY ? 0.f : ex2(v * kLog2e - m2);
      sum += w;
      const float* src = p.o_part + (sp * rows_total + row) * D + lane * kPer;
#pragma unroll
      for (int e = 0; e < kPer; e += 2) {
        const float2 x = *reinterpret_cast<const float2*>(src + e);
        acc[e] += w * x.x;
        acc[e + 1] += w * x.y;
      }
    }
  }
  float inv, lse;
  finish_row(m2, sum, p.sinks, h, inv, lse);
  T* out = static_cast<T*>(p.o) + b * p.o_b + (q0 + i) * p.o_n + h * p.o_h + lane * kPer;
#pragma unroll
  for (int e = 0; e < kPer; e += 2) *reinterpret_cast<std::uint32_t*>(out + e) = E::pack(acc[e] * inv, acc[e + 1] * inv);
  if (lane == 0 && p.lse != nullptr) p.lse[b * p.lse_b + h * p.lse_h + (q0 + i) * p.lse_n] = lse;
}

}  // namespace flatattn::cuda
