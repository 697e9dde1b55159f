// The split-KV combine, fused into the decode kernel (one launch per decode step): each of the num_splits
// CTAs of one (sequence, kv head, row block) writes its fp32 partial O and LSE to the call's workspace, then
// arrives on the row block's counter; the CTA that arrives last merges the rows by their LSEs (the
// log-sum-exp merge of Milakov & Gimelshein 2018, "Online normalizer calculation for softmax", as used by
// Flash-Decoding): LSE = log sum_s e^{LSE_s}, O = sum_s e^{LSE_s - LSE} O_s, always in split order 0, 1, ..
// (deterministic: the result does not depend on which CTA arrives last); then the attention sink's term,
// the output in the storage dtype and the LSE. A row with a split that refused its sequence
// (kSkippedLseBits) is not written.
//
// Memory ordering (the threadfence-reduction pattern, CUDA C++ Programming Guide, "Memory Fence Functions"):
// every thread fences its partial stores GPU-wide before the CTA's one atomic arrival; the last arriver
// fences again before it reads its peers' partials, through L2 (ld.global.cg: no stale L1 lines). The
// counter is reset to 0 by the last arriver, so a counter stays valid for the next use of the same
// workspace (forward_kvcache.cc zeroes the counters once per workspace allocation).
#pragma once

#include <cmath>
#include <cstdint>

#include "src/cuda/common/dtype.cuh"
#include "src/cuda/decode/decode_params.h"
#include "src/cuda/decode/row_finish.cuh"

namespace flatattn::cuda {

/// Called by every thread of every CTA of a row block after its partial stores: true (in every thread of
/// the CTA) for the one CTA that arrives last, which then owns the combine. `word`: a __shared__ scratch
/// word. The counter is back at 0 when the last CTA returns true.
FLATATTN_DEVICE bool split_arrive(unsigned* counter, int num_splits, unsigned* word) {
  __threadfence();  // this thread's partials before the CTA's arrival (cumulative through the barrier)
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned before = atomicAdd(counter, 1u);
    const bool last = before == static_cast<unsigned>(num_splits - 1);
    if (last) {
      atomicExch(counter, 0u);  // every peer has arrived: none touches it again in this call
      __threadfence();          // acquire: the peers' partials after their arrivals
    }
    *word = last ? 1u : 0u;
  }
  __syncthreads();
  return *word != 0u;
}

/// The combine of the rows r_base .. min(r_base + 16, rows) - 1 of kv head hk of sequence b (row r: query
/// i = r / group, head hk * group + r % group; q/out rows from q0) from the num_splits partials, by the CTA
/// that arrived last (split_arrive). Latency matters here (it is the step's tail), so no loop waits on one
/// L2 round trip per split: (1) one warp per row, its lanes over the splits: the row's max LSE and whether a
/// split refused it (exact, order-free), then the splits' weights e^{LSE_s - LSE_max} into shared memory
/// `smem` (the first kWeightCap splits; later ones are recomputed from the LSE, the same value); (2) the
/// CTA's threads over (row, 8-column chunk) items, each summing the splits in split order, the partials'
/// loads unrolled. Every value as the former separate combine kernel computed it. `smem`: >= 64 KB.
template <class E, int D>
FLATATTN_DEVICE void combine_rows(const DecodeParams& p, int b, int hk, int r_base, int rows, int q0, float* smem) {
  using T = typename E::T;
  constexpr int kRows = 16, kDT = D / 8, kWeightCap = 1024;
  constexpr float kLog2e = 1.4426950408889634f;
  __shared__ float row_m2[kRows];
  __shared__ unsigned row_skip[kRows];
  const std::int64_t rows_total = static_cast<std::int64_t>(p.batch) * p.nq * p.hq;
  const int n = p.num_splits, here = min(kRows, rows - r_base);
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int warps = static_cast<int>(blockDim.x) >> 5;
  auto row_of = [&](int r, int& i, int& h) {
    i = (r_base + r) / p.group;
    h = hk * p.group + (r_base + r - i * p.group);
    return (static_cast<std::int64_t>(b) * p.nq + i) * p.hq + h;
  };
  for (int r = warp; r < here; r += warps) {
    int i, h;
    const std::int64_t row = row_of(r, i, h);
    float mx = -INFINITY;
    bool skipped = false;
    for (int sp = lane; sp < n; sp += 32) {
      const float v = __ldcg(p.lse_part + sp * rows_total + row);
      skipped = skipped || __float_as_uint(v) == kSkippedLseBits;
      mx = fmaxf(mx, v);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    skipped = __any_sync(0xffffffffu, skipped);
    const float m2 = mx * kLog2e;
    if (mx != -INFINITY && !skipped) {
      for (int sp = lane; sp < n && sp < kWeightCap; sp += 32) {
        const float v = __ldcg(p.lse_part + sp * rows_total + row);
        smem[r * kWeightCap + sp] = v == -INFINITY ? 0.f : ex2(v * kLog2e - m2);
      }
    }
    if (lane == 0) row_m2[r] = m2, row_skip[r] = skipped ? 1u : 0u;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < here * kDT; idx += blockDim.x) {
    const int r = idx / kDT, c = (idx - r * kDT) * 8;
    if (row_skip[r] != 0u) continue;  // the sequence was refused by a split: nothing written
    int i, h;
    const std::int64_t row = row_of(r, i, h);
    const float m2 = row_m2[r];
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.f;
    float sum = 0.f;
    if (m2 != -INFINITY) {
#pragma unroll 8
      for (int sp = 0; sp < n; ++sp) {
        float w;
        if (sp < kWeightCap) {
          w = smem[r * kWeightCap + sp];
        } else {
          const float v = __ldcg(p.lse_part + sp * rows_total + row);
          w = v == -INFINITY ? 0.f : ex2(v * kLog2e - m2);
        }
        sum += w;
        const float4* src = reinterpret_cast<const float4*>(p.o_part + (sp * rows_total + row) * D + c);
        const float4 x0 = __ldcg(src), x1 = __ldcg(src + 1);
        acc[0] += w * x0.x, acc[1] += w * x0.y, acc[2] += w * x0.z, acc[3] += w * x0.w;
        acc[4] += w * x1.x, acc[5] += w * x1.y, acc[6] += w * x1.z, acc[7] += w * x1.w;
      }
    }
    float inv, lse;
    finish_row(m2, sum, p.sinks, h, inv, lse);
    uint4 v;
    v.x = E::pack(acc[0] * inv, acc[1] * inv);
    v.y = E::pack(acc[2] * inv, acc[3] * inv);
    v.z = E::pack(acc[4] * inv, acc[5] * inv);
    v.w = E::pack(acc[6] * inv, acc[7] * inv);
    *reinterpret_cast<uint4*>(static_cast<T*>(p.o) + b * p.o_b + (q0 + i) * p.o_n + h * p.o_h + c) = v;
    if (c == 0 && p.lse != nullptr) p.lse[b * p.lse_b + h * p.lse_h + (q0 + i) * p.lse_n] = lse;
  }
}

}  // namespace flatattn::cuda
