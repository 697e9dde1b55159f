// The row-wise passes around the backward's main kernel (FlashAttention-2, Alg. 2 lines 4 and 19):
//   bwd_dot_kernel:     D_i = rowsum(dO_i o O_i) in fp32 into the workspace, and the row's dQ
//                       accumulator set to zero (the main kernel only adds to it); deterministic: also
//                       the maxima of |dO_i| and |D_i| for the fixed-point range (common/fixed_dq.cuh).
//   bwd_bound_kernel:   deterministic only: max |K| and max |V_j| over the key rows (the same range).
//   bwd_convert_kernel: dQ = scale * accumulator, rounded to the storage dtype, into the caller's dq.
// One CTA per (block of kRows query rows, query head, sequence), like the forward's grid. A row is
// split into 16-byte chunks; kLanes (a power of two >= the chunks) consecutive lanes share a row and
// reduce with xor-shuffles, so every load is 16 bytes and a warp reads whole rows.
#pragma once

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/bwd_params.h"
#include "src/cuda/common/dtype.cuh"
#include "src/cuda/common/fixed_dq.cuh"

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
    if (p.f.cu_q != nullptr) {
      q0 = p.f.cu_q[b];
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

/// Row maxima of one CTA -> the call's maxima: a warp reduction, then one atomicMax per warp and value.
FLATATTN_DEVICE void warp_max_to(float* a, float v) {
  if (v != v) v = __int_as_float(0x7f800000);  // NaN -> +inf before fmaxf, which would drop it
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  if (threadIdx.x % 32 == 0) atomic_max_nonneg(a, v);
}

/// |x| with NaN kept as NaN (fmaxf would drop it; atomic_max_nonneg turns it into +inf).
FLATATTN_DEVICE float nan_max(float m, float x) { return (x != x || m != m) ? __int_as_float(0x7fffffff) : fmaxf(m, x); }

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
  float do_max = 0.f, dsum_max = 0.f;  // deterministic: this thread's rows' |dO_i| and |D_i|
#pragma unroll 1
  for (int pass = 0; pass < S::kRows / S::kRowsPerPass; ++pass) {
    const int i = rc.m_block * S::kRows + pass * S::kRowsPerPass + static_cast<int>(threadIdx.x) / S::kLanes;
    float acc = 0.f, sq = 0.f;
    const int c = lane_in_row * 8;
    if (i < nq && lane_in_row < S::kChunks && c < p.f.d) {
      const uint4 o = *reinterpret_cast<const uint4*>(go + i * p.f.o_n + c);
      const uint4 d = *reinterpret_cast<const uint4*>(gdo + i * p.do_n + c);
      const std::uint32_t ow[4] = {o.x, o.y, o.z, o.w}, dw[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 a = unpack2<E>(ow[e]), bb = unpack2<E>(dw[e]);
        acc = fmaf(a.x, bb.x, fmaf(a.y, bb.y, acc));
        sq = fmaf(bb.x, bb.x, fmaf(bb.y, bb.y, sq));
      }
    }
#pragma unroll
    for (int off = S::kLanes / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (i < nq) {
      if (lane_in_row == 0) p.dsum[ws + i] = acc;
      if (lane_in_row < S::kChunks) {
        if (p.dq_fixed != nullptr) {
          ulonglong2* a = reinterpret_cast<ulonglong2*>(p.dq_fixed + (ws + i) * D + c);
#pragma unroll
          for (int q = 0; q < 4; ++q) a[q] = make_ulonglong2(0ull, 0ull);
        } else {
          float4* a = reinterpret_cast<float4*>(p.dq_accum + (ws + i) * D + c);
          a[0] = make_float4(0.f, 0.f, 0.f, 0.f);
          a[1] = make_float4(0.f, 0.f, 0.f, 0.f);
        }
      }
    }
    if (p.dq_bound != nullptr) {
#pragma unroll
      for (int off = S::kLanes / 2; off > 0; off /= 2) sq += __shfl_xor_sync(0xffffffffu, sq, off);
      if (i < nq) {
        do_max = nan_max(do_max, sqrtf(sq));
        dsum_max = nan_max(dsum_max, fabsf(acc));
      }
    }
  }
  if (p.dq_bound != nullptr) {
    warp_max_to(&p.dq_bound->do_norm, do_max);
    warp_max_to(&p.dq_bound->dsum_abs, dsum_max);
  }
}

/// Deterministic mode: max |K| (every element) and max |V_j| (row 2-norms) over the key rows of one
/// (block of kRows keys, kv head, sequence), into the call's bound. Grid as the row passes, over key
/// rows and kv heads.
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
    float sq = 0.f;
    const int c = lane_in_row * 8;
    if (j < bi.nk && lane_in_row < S::kChunks && c < p.f.d) {
      const uint4 k = *reinterpret_cast<const uint4*>(gk + j * p.f.k_n + c);
      const uint4 v = *reinterpret_cast<const uint4*>(gv + j * p.f.v_n + c);
      const std::uint32_t kw[4] = {k.x, k.y, k.z, k.w}, vw[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 a = unpack2<E>(kw[e]), bb = unpack2<E>(vw[e]);
        k_max = nan_max(nan_max(k_max, fabsf(a.x)), fabsf(a.y));
        sq = fmaf(bb.x, bb.x, fmaf(bb.y, bb.y, sq));
      }
    }
#pragma unroll
    for (int off = S::kLanes / 2; off > 0; off /= 2) sq += __shfl_xor_sync(0xffffffffu, sq, off);
    if (j < bi.nk) v_max = nan_max(v_max, sqrtf(sq));
  }
  warp_max_to(&p.dq_bound->k_abs, k_max);
  warp_max_to(&p.dq_bound->v_norm, v_max);
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
  const std::int64_t ws = p.ws_row(rc.h, rc.b);
  // Deterministic: 2^-e times the scale, or NaN for all of dQ when the range was exceeded.
  float fixed_s = 0.f;
  if (p.dq_fixed != nullptr) {
    const FixedScale fs(*p.dq_bound);
    fixed_s = fs.finite && p.dq_bound->bad == 0 ? fs.from_fixed * p.ds_scale : __int_as_float(0x7fffffff);
  }
#pragma unroll 1
  for (int pass = 0; pass < S::kRows / S::kRowsPerPass; ++pass) {
    const int i = rc.m_block * S::kRows + pass * S::kRowsPerPass + static_cast<int>(threadIdx.x) / S::kLanes;
    const int c = lane_in_row * 8;
    if (i < nq && lane_in_row < S::kChunks && c < p.f.d) {
      float x[8];
      if (p.dq_fixed != nullptr) {  // deterministic: fixed point -> float
        const ulonglong2* a = reinterpret_cast<const ulonglong2*>(p.dq_fixed + (ws + i) * D + c);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const ulonglong2 w = a[q];
          x[2 * q] = __ll2float_rn(static_cast<long long>(w.x)) * fixed_s;
          x[2 * q + 1] = __ll2float_rn(static_cast<long long>(w.y)) * fixed_s;
        }
      } else {
        const float4* a = reinterpret_cast<const float4*>(p.dq_accum + (ws + i) * D + c);
        const float4 u = a[0], v = a[1];
        const float s = p.ds_scale;
        x[0] = u.x * s, x[1] = u.y * s, x[2] = u.z * s, x[3] = u.w * s;
        x[4] = v.x * s, x[5] = v.y * s, x[6] = v.z * s, x[7] = v.w * s;
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

}  // namespace flatattn::cuda
