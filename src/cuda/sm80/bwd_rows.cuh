// The two row-wise passes around the backward's main kernel (FlashAttention-2, Alg. 2 lines 4 and 19):
//   bwd_dot_kernel:     D_i = rowsum(dO_i o O_i) in fp32 into the workspace, and the row's fp32 dQ
//                       accumulator set to zero (the main kernel only adds to it).
//   bwd_convert_kernel: dQ = scale * accumulator, rounded to the storage dtype, into the caller's dq.
// One CTA per (block of kRows query rows, query head, sequence), like the forward's grid. A row is
// split into 16-byte chunks; kLanes (a power of two >= the chunks) consecutive lanes share a row and
// reduce with xor-shuffles, so every load is 16 bytes and a warp reads whole rows.
#pragma once

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/bwd_params.h"
#include "src/cuda/common/dtype.cuh"

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
#pragma unroll 1
  for (int pass = 0; pass < S::kRows / S::kRowsPerPass; ++pass) {
    const int i = rc.m_block * S::kRows + pass * S::kRowsPerPass + static_cast<int>(threadIdx.x) / S::kLanes;
    float acc = 0.f;
    const int c = lane_in_row * 8;
    if (i < nq && lane_in_row < S::kChunks && c < p.f.d) {
      const uint4 o = *reinterpret_cast<const uint4*>(go + i * p.f.o_n + c);
      const uint4 d = *reinterpret_cast<const uint4*>(gdo + i * p.do_n + c);
      const std::uint32_t ow[4] = {o.x, o.y, o.z, o.w}, dw[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 a = unpack2<E>(ow[e]), bb = unpack2<E>(dw[e]);
        acc = fmaf(a.x, bb.x, fmaf(a.y, bb.y, acc));
      }
    }
#pragma unroll
    for (int off = S::kLanes / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (i < nq) {
      if (lane_in_row == 0) p.dsum[ws + i] = acc;
      if (lane_in_row < S::kChunks) {
        float4* a = reinterpret_cast<float4*>(p.dq_accum + (ws + i) * D + c);
        a[0] = make_float4(0.f, 0.f, 0.f, 0.f);
        a[1] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
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
  const std::int64_t ws = p.ws_row(rc.h, rc.b);
#pragma unroll 1
  for (int pass = 0; pass < S::kRows / S::kRowsPerPass; ++pass) {
    const int i = rc.m_block * S::kRows + pass * S::kRowsPerPass + static_cast<int>(threadIdx.x) / S::kLanes;
    const int c = lane_in_row * 8;
    if (i < nq && lane_in_row < S::kChunks && c < p.f.d) {
      const float4* a = reinterpret_cast<const float4*>(p.dq_accum + (ws + i) * D + c);
      const float4 x = a[0], y = a[1];
      const float s = p.ds_scale;
      uint4 out;
      out.x = E::pack(x.x * s, x.y * s);
      out.y = E::pack(x.z * s, x.w * s);
      out.z = E::pack(y.x * s, y.y * s);
      out.w = E::pack(y.z * s, y.w * s);
      *reinterpret_cast<uint4*>(gdq + i * p.dq_n + c) = out;
    }
  }
}

}  // namespace flatattn::cuda
