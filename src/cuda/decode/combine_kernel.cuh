// The split-KV combine: merges the fp32 partials of num_splits > 1 CTAs of one query row by their LSEs (the
// log-sum-exp merge of Milakov & Gimelshein 2018, "Online normalizer calculation for softmax", as used by
// Flash-Decoding): LSE = log sum_s e^{LSE_s}, O = sum_s e^{LSE_s - LSE} O_s; then the attention sink's
// term, the output in the storage dtype and the LSE. One CTA of four warps per row (b, i, h): the split LSEs
// are read by the CTA's threads in parallel and each warp merges every fourth split, then the warps' sums are
// added in warp order. (One warp walking all splits was a chain of dependent loads: 26 us at B = 1, Hq = 32,
// 32 splits on the H100 under ncu, longer than the decode kernel; bench/results/decode-combine-h100-*.md.)
// A row with a split that refused its sequence (kSkippedLseBits) is not written.
#pragma once

#include <cmath>
#include <cstdint>

#include "src/cuda/common/dtype.cuh"
#include "src/cuda/common/pdl.cuh"
#include "src/cuda/common/seq_rows.h"
#include "src/cuda/decode/decode_params.h"
#include "src/cuda/decode/row_finish.cuh"

namespace flatattn::cuda {

/// Threads of one combine CTA: one CTA per row, its warps share the row's splits.
inline constexpr int kCombineThreads = 128;

template <class E, int D>
__global__ void __launch_bounds__(kCombineThreads) decode_combine_kernel(const DecodeParams p) {
  using T = typename E::T;
  constexpr int kWarps = kCombineThreads / 32;
  constexpr int kPer = D / 32;  // columns per lane
  static_assert(D % 64 == 0, "two or more columns per lane, pairs packed");
  constexpr float kLog2e = 1.4426950408889634f;
  __shared__ float s_max[kWarps], s_sum[kWarps];
  __shared__ float s_acc[kWarps - 1][D];
  const std::int64_t rows_total = static_cast<std::int64_t>(p.batch) * p.nq * p.hq;
  const std::int64_t row = blockIdx.x;
  pdl_wait();  // launched with PDL (common/pdl.cuh): the decode kernel's partials are complete after this
  if (row >= rows_total) return;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  // Rows are (b * Nq + i) * Hq + h (varlen: Nq is the bound, sequence b's rows i < Nq_b).
  const int h = static_cast<int>(row % p.hq);
  const std::int64_t bi = row / p.hq;
  const int i = static_cast<int>(bi % p.nq), b = static_cast<int>(bi / p.nq);
  int q0 = 0;
  if (p.cu_seqlens_q != nullptr) {
    // The same offsets the decode kernel read: a row past Nq_b was never written (nor its partials), and
    // refused offsets give no rows. The same for every thread of the CTA.
    const SeqRows sr = seq_rows(p.cu_seqlens_q, b, p.total_q, p.nq, kMetaCuQ, kMetaMaxQ);
    if (i >= sr.len) return;
    q0 = sr.start;
  }
  // The row's max LSE: thread t reads splits t, t + 128, ... (one load each for the planner's <= 128 splits),
  // so the split LSEs are read in parallel, not one after the other.
  float mx = -INFINITY;
  bool skipped = false;
  for (int sp = t; sp < p.num_splits; sp += kCombineThreads) {
    const float v = p.lse_part[sp * rows_total + row];
    skipped |= __float_as_uint(v) == kSkippedLseBits;
    mx = fmaxf(mx, v);
  }
  if (__syncthreads_or(skipped)) return;  // the sequence was refused: nothing written
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) s_max[warp] = mx;
  __syncthreads();
#pragma unroll
  for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_max[w]);
  // Warp w merges splits w, w + 4, ...: its loads are independent, four in flight per lane.
  const float m2 = mx * kLog2e;
  float acc[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) acc[e] = 0.f;
  float sum = 0.f;
  if (mx != -INFINITY) {
#pragma unroll 4
    for (int sp = warp; sp < p.num_splits; sp += kWarps) {
      const float v = p.lse_part[sp * rows_total + row];
      if (v == -INFINITY) continue;  // an empty split: its partial is not read
      const float w = ex2(v * kLog2e - m2);
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
  // The warps' sums, in warp order (the result does not depend on timing).
  if (warp > 0) {
#pragma unroll
    for (int e = 0; e < kPer; ++e) s_acc[warp - 1][lane * kPer + e] = acc[e];
  }
  if (lane == 0) s_sum[warp] = sum;
  __syncthreads();
  if (warp > 0) return;
  for (int w = 1; w < kWarps; ++w) {
    sum += s_sum[w];
#pragma unroll
    for (int e = 0; e < kPer; ++e) acc[e] += s_acc[w - 1][lane * kPer + e];
  }
  float inv, lse;
  finish_row(m2, sum, p.sinks, h, inv, lse);
  T* out = static_cast<T*>(p.o) + b * p.o_b + (q0 + i) * p.o_n + h * p.o_h + lane * kPer;
#pragma unroll
  for (int e = 0; e < kPer; e += 2) *reinterpret_cast<std::uint32_t*>(out + e) = E::pack(acc[e] * inv, acc[e + 1] * inv);
  if (lane == 0 && p.lse != nullptr) p.lse[b * p.lse_b + h * p.lse_h + (q0 + i) * p.lse_n] = lse;
}

}  // namespace flatattn::cuda
