// The row-wise passes around the backward's main kernel (FlashAttention-2, Alg. 2 lines 4 and 19):
//   bwd_bound_kernel:   deterministic only, first: max |K| and max |V_j| over the key rows.
//   bwd_dot_kernel:     D_i = rowsum(dO_i o O_i) in fp32 into the workspace, and the row's dQ
//                       accumulator set to zero (the main kernel only adds to it); deterministic: also
//                       the row's fixed-point unit from its bound (common/repro_dq.cuh).
//   bwd_sinks_kernel:   with attention sinks and dsinks requested, after the pre-pass: dsink_h =
//                       -sum_{b,i} e^(sink_h - LSE_i) D_i, one CTA per head in a fixed order.
//   bwd_convert_kernel: dQ = scale * accumulator (deterministic: the decoded integer sums times the
//                       row's unit), rounded to the storage dtype, into the caller's dq.
// One CTA per (block of kRows query rows, query head, sequence), like the forward's grid. A row is
// split into 16-byte chunks; kLanes (a power of two >= the chunks) consecutive lanes share a row and
// reduce with xor-shuffles, so every load is 16 bytes and a warp reads whole rows.
#pragma once

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/bwd_params.h"
#include "src/cuda/common/dtype.cuh"
#include "src/cuda/common/repro_dq.cuh"

namespace flatattn::cuda {

template <int D>
struct RowPassShape {
  static constexpr int kChunks = D / 8;  ///< 16-byte chunks of a row (kernel head dim)
  static constexpr int kLanes = kChunks <= 4 ? 4 : kChunks <= 8 ? 8 : kChunks <= 16 ? 16 : 32;
  static_assert(kChunks <= 32, "head dims up to 256");
  static constexpr int kThreads = 128;
  static constexpr int kRows = 64;  ///< rows per CTA
  static constexpr int kRowsPerPass = kThreads / kLanes;
};

/// Two 16-bit values (one 32-bit word) -> floats.
template <class E>
FLATATTN_DEVICE float2 unpack2(std::uint32_t w) {
  if constexpr (E::kIsBf16) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w));
  } else {
    return __half22float2(*reinterpret_cast<const __half2*>(&w));
  }
}

/// Query-row offsets of one (sequence, head) for the backward's tensors, next to BlockInfo's.
struct BwdRowInfo {
  std::int64_t dout, dq;
  FLATATTN_DEVICE BwdRowInfo(const BwdParams& p, int b, int h) {
    std::int64_t q0 = 0;
    if (p.f.cu_q != nullptr) {  // bounded as BlockInfo's (which skips and flags a bad sequence)
      q0 = seq_rows(p.f.cu_q, b, p.f.total_q, p.f.nq, kMetaCuQ, kMetaMaxQ).start;
      b = 0;
    }
    dout = b * p.do_b + q0 * p.do_n + h * p.do_h;
    dq = b * p.dq_b + q0 * p.dq_n + h * p.dq_h;
  }
};

/// Grid coordinates of the row passes: (row block, head, sequence), as TileCoord in the forward.
struct RowCoord {
  int m_block, h, b;
  FLATATTN_DEVICE RowCoord(int n_m_blocks, int hq) {
    const int linear = blockIdx.x;
    const int hb = linear / n_m_blocks;
    m_block = linear - hb * n_m_blocks;
    h = hb % hq;
    b = hb / hq;
  }
};

/// max(a, b) that keeps a NaN of either (fmaxf would drop it).
FLATATTN_DEVICE float nan_fmax(float a, float b) { return (a != a || b != b) ? __int_as_float(0x7fffffff) : fmaxf(a, b); }

/// max over the kLanes lanes of a row (xor-shuffles), NaN kept.
template <int Lanes>
FLATATTN_DEVICE float row_max(float v) {
#pragma unroll
  for (int off = Lanes / 2; off > 0; off /= 2) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = nan_fmax(v, o);
  }
  return v;
}

template <int Lanes>
FLATATTN_DEVICE float row_sum(float v) {
#pragma unroll
  for (int off = Lanes / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

/// The 2-norm of a row spread over Lanes lanes (8 values each), without overflow or underflow of the
/// squares: max |x| times the norm of x / max |x|.
template <int Lanes>
FLATATTN_DEVICE float row_norm(const float (&x)[8]) {
  float m = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) m = nan_fmax(m, fabsf(x[e]));
  m = row_max<Lanes>(m);
  const bool scaled = m > 0.f && m <= 3.0e38f;  // else 0, NaN or Inf: the norm is m (every lane shuffles)
  const float inv = scaled ? 1.f / m : 0.f;
  float sq = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) sq = fmaf(x[e] * inv, x[e] * inv, sq);
  sq = row_sum<Lanes>(sq);
  return scaled ? m * sqrtf(sq) : m;
}

/// A 16-byte chunk of 16-bit values -> 8 floats.
template <class E>
FLATATTN_DEVICE void unpack8(const uint4& w, float (&x)[8]) {
  const std::uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 f = unpack2<E>(ws[e]);
    x[2 * e] = f.x;
    x[2 * e + 1] = f.y;
  }
}

template <class E, int D>
__global__ void __launch_bounds__(RowPassShape<D>::kThreads)
    bwd_dot_kernel(const __grid_constant__ BwdParams p, int n_row_blocks) {
  using S = RowPassShape<D>;
  const RowCoord rc(n_row_blocks, p.hq);
  const BlockInfo bi(p.f, rc.b, rc.h);
  const BwdRowInfo ri(p, rc.b, rc.h);
  const int nq = min(bi.nq, p.f.nq);  // rows past max_seqlen_q have no workspace
  const int lane_in_row = threadIdx.x % S::kLanes;
  const auto* go = static_cast<const std::uint16_t*>(p.f.o) + bi.o;
  const auto* gdo = static_cast<const std::uint16_t*>(p.dout) + ri.dout;
  const std::int64_t ws = p.ws_row(rc.h, rc.b);
  const bool det = p.deterministic;
#pragma unroll 1
  for (int pass = 0; pass < S::kRows / S::kRowsPerPass; ++pass) {
    const int i = rc.m_block * S::kRows + pass * S::kRowsPerPass + static_cast<int>(threadIdx.x) / S::kLanes;
    float o[8] = {}, d[8] = {};
    const int c = lane_in_row * 8;
    if (i < nq && lane_in_row < S::kChunks && c < p.f.d) {
      unpack8<E>(*reinterpret_cast<const uint4*>(go + i * p.f.o_n + c), o);
      unpack8<E>(*reinterpret_cast<const uint4*>(gdo + i * p.do_n + c), d);
    }
    float acc = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc = fmaf(o[e], d[e], acc);
    acc = row_sum<S::kLanes>(acc);
    // Deterministic: row i's unit from B_i = max|K| (|dO_i| max|V_j| / (1 - p) + |D_i|) (common/repro_dq.cuh;
    // drop_scale = 1 / (1 - p) with dropout, 1 without).
    const float do_norm = det ? row_norm<S::kLanes>(d) : 0.f;
    if (i < nq) {
      if (lane_in_row == 0) {
        p.dsum[ws + i] = acc;
        if (det)
          p.dq_unit[ws + i] = repro_unit(p.dq_bound->k_abs *
                                         fmaf(do_norm * p.f.var.drop_scale, p.dq_bound->v_norm, fabsf(acc)));
      }
      if (lane_in_row < S::kChunks) {
        float4* a = reinterpret_cast<float4*>(p.dq_accum + (ws + i) * D + c);  // 0.f and integer 0 alike
        a[0] = a[1] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
  }
}

/// Deterministic mode, before the pre-pass: max |K| (every element) and max |V_j| (row 2-norms) over
/// the key rows of one (block of kRows keys, kv head, sequence), into the call's DqBound. Grid as the
/// row passes, over key rows and kv heads; one atomicMax per warp and value.
template <class E, int D>
__global__ void __launch_bounds__(RowPassShape<D>::kThreads)
    bwd_bound_kernel(const __grid_constant__ BwdParams p, int n_row_blocks) {
  using S = RowPassShape<D>;
  const RowCoord rc(n_row_blocks, p.hkv);
  const BlockInfo bi(p.f, rc.b, rc.h * p.f.group);  // k, v offsets of kv head rc.h
  const int lane_in_row = threadIdx.x % S::kLanes;
  const auto* gk = static_cast<const std::uint16_t*>(p.f.k) + bi.k;
  const auto* gv = static_cast<const std::uint16_t*>(p.f.v) + bi.v;
  float k_max = 0.f, v_max = 0.f;
#pragma unroll 1
  for (int pass = 0; pass < S::kRows / S::kRowsPerPass; ++pass) {
    const int j = rc.m_block * S::kRows + pass * S::kRowsPerPass + static_cast<int>(threadIdx.x) / S::kLanes;
    float k[8] = {}, v[8] = {};
    const int c = lane_in_row * 8;
    if (j < bi.nk && lane_in_row < S::kChunks && c < p.f.d) {
      unpack8<E>(*reinterpret_cast<const uint4*>(gk + j * p.f.k_n + c), k);
      unpack8<E>(*reinterpret_cast<const uint4*>(gv + j * p.f.v_n + c), v);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) k_max = nan_fmax(k_max, fabsf(k[e]));
    v_max = nan_fmax(v_max, row_norm<S::kLanes>(v));
  }
  k_max = row_max<32>(k_max);
  v_max = row_max<32>(v_max);
  if (threadIdx.x % 32 == 0) {
    atomic_max_nonneg(&p.dq_bound->k_abs, k_max);
    atomic_max_nonneg(&p.dq_bound->v_norm, v_max);
  }
}

template <class E, int D>
__global__ void __launch_bounds__(RowPassShape<D>::kThreads)
    bwd_convert_kernel(const __grid_constant__ BwdParams p, int n_row_blocks) {
  using S = RowPassShape<D>;
  const RowCoord rc(n_row_blocks, p.hq);
  const BlockInfo bi(p.f, rc.b, rc.h);
  const BwdRowInfo ri(p, rc.b, rc.h);
  const int nq = min(bi.nq, p.f.nq);
  const int lane_in_row = threadIdx.x % S::kLanes;
  auto* gdq = static_cast<std::uint16_t*>(p.dq) + ri.dq;
  float* const gdq32 = static_cast<float*>(p.dq) + ri.dq;  // p.grad_f32
  const std::int64_t ws = p.ws_row(rc.h, rc.b);
#pragma unroll 1
  for (int pass = 0; pass < S::kRows / S::kRowsPerPass; ++pass) {
    const int i = rc.m_block * S::kRows + pass * S::kRowsPerPass + static_cast<int>(threadIdx.x) / S::kLanes;
    const int c = lane_in_row * 8;
    if (i < nq && lane_in_row < S::kChunks && c < p.f.d) {
      float x[8];
      const float s = p.ds_scale;
      if (p.deterministic) {  // the exact integer sums in units u_i, rounded once
        const ulonglong2* a = reinterpret_cast<const ulonglong2*>(p.dq_accum + (ws + i) * D + c);
        const float us = p.dq_unit[ws + i] * s;  // NaN: a NaN row
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          const ulonglong2 w = a[q];
          const int2 u = repro_unpack(w.x), v = repro_unpack(w.y);
          x[4 * q] = static_cast<float>(u.x) * us, x[4 * q + 1] = static_cast<float>(u.y) * us;
          x[4 * q + 2] = static_cast<float>(v.x) * us, x[4 * q + 3] = static_cast<float>(v.y) * us;
        }
      } else {
        const float4* a = reinterpret_cast<const float4*>(p.dq_accum + (ws + i) * D + c);
        const float4 u = a[0], v = a[1];
        x[0] = u.x * s, x[1] = u.y * s, x[2] = u.z * s, x[3] = u.w * s;
        x[4] = v.x * s, x[5] = v.y * s, x[6] = v.z * s, x[7] = v.w * s;
      }
      if (p.grad_f32) {  // the fp32 values the 16-bit store would round (rows 16-byte aligned: check_args.cc)
        float4* o = reinterpret_cast<float4*>(gdq32 + i * p.dq_n + c);
        o[0] = make_float4(x[0], x[1], x[2], x[3]);
        o[1] = make_float4(x[4], x[5], x[6], x[7]);
        continue;
      }
      uint4 out;
      out.x = E::pack(x[0], x[1]);
      out.y = E::pack(x[2], x[3]);
      out.z = E::pack(x[4], x[5]);
      out.w = E::pack(x[6], x[7]);
      *reinterpret_cast<uint4*>(gdq + i * p.dq_n + c) = out;
    }
  }
}

/// Attention sinks' gradient (softmax/add_sinks): with P_ij = e^(x_ij - LSE_i) and the sink's probability
/// e^(sink - LSE_i) in the same row, d loss / d sink = -sum_i e^(sink - LSE_i) rowsum(dO_i o O_i) over every
/// (sequence, row) of head h; D_i is the pre-pass's (p.dsum), LSE the forward's (which includes the sink).
/// One CTA per query head; each thread sums rows tid, tid + kThreads, ... sequence by sequence, then a
/// fixed shared-memory tree: the same bits on every run. Rows with LSE = -inf add 0.
constexpr int kSinkThreads = 256;

template <int kThreads = kSinkThreads>  // a template: instance files include this header many times
__global__ void __launch_bounds__(kThreads) bwd_sinks_kernel(const __grid_constant__ BwdParams p) {
  __shared__ float part[kThreads];
  const int h = blockIdx.x;
  const float sink = p.f.sinks[h];
  float acc = 0.f;
  for (int b = 0; b < p.batch; ++b) {
    const BlockInfo bi(p.f, b, h);
    const int nq = min(bi.nq, p.f.nq);  // rows past max_seqlen_q have no workspace
    const std::int64_t ws = p.ws_row(h, b);
    for (int i = static_cast<int>(threadIdx.x); i < nq; i += kThreads) {
      const float lse = p.f.lse[bi.lse + i * p.f.lse_n];
      if (lse != -INFINITY) acc = fmaf(expf(sink - lse), p.dsum[ws + i], acc);
    }
  }
  part[threadIdx.x] = acc;
  __syncthreads();
#pragma unroll 1
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) p.dsinks[h] = -part[0];
}

}  // namespace flatattn::cuda
