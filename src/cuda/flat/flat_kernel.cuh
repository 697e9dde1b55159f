// FLAT-dataflow forward (Kao et al., "FLAT", ASPLOS'23, Sec. 4: row-granularity fused logit/attend
// tiling) on tensor cores. A CTA owns R = 16 * kMT * Warps query rows and keeps their whole R x Nk
// logit block on chip -- in registers, each warp its own 16 * kMT rows -- so the softmax is exact over
// the full row: one max, one exp pass, one sum, no running rescale; then O = P V is accumulated in
// registers and written once (output stationary). It serves Nk <= kCapBlocks * BlockN (the on-chip
// row capacity); past that the Flash kernel is the answer (the planner, policy/heuristics.h, picks).
//
// Pipeline: Q and K(0) in flight; for each key block: wait | barrier | prefetch the next K block (or
// V(0) after the last) into the other buffer | S(j) = Q K(j)^T, logits, mask. Then the row max over all
// blocks, P = exp2, row sums (V(0) is landing meanwhile); then for each block: wait | barrier |
// prefetch V(j+1) | O += P(j) V(j). K and V share two buffers.
#pragma once

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/copy.cuh"
#include "src/cuda/common/mask.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/score.cuh"
#include "src/cuda/common/smem_tile.cuh"
#include "src/cuda/common/softmax.cuh"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/common/tile_coord.cuh"
#include "src/cuda/common/tile_io.cuh"
#include "src/cuda/common/warp_gemm.cuh"

namespace flatattn::cuda {

/// Compile-time shape of a FLAT kernel: head dim D and a row T of the policy table (policy/tile_size.h,
/// flat_tile) or a tuner's candidate.
template <int D, FlatTileSize T>
struct FlatShape {
  static constexpr int kD = D, kWarps = T.warps, kBlockN = T.block_n, kCapBlocks = T.cap_blocks;
  static constexpr int kMinBlocks = T.min_blocks;
  static constexpr int kMT = T.m_tiles;
  static constexpr int kBlockM = T.block_m();  ///< R, query rows per CTA: 16 m-tiles x warps
  static constexpr int kCapN = T.cap_n();      ///< longest key row held on chip: cap_blocks x BlockN
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kNT = kBlockN / 8, kDT = D / 8;
  static_assert(kBlockN % 16 == 0 && D % 32 == 0, "BlockN multiple of 16, D multiple of 32");
  using TQ = SmemTile<kBlockM, D>;
  using TKV = SmemTile<kBlockN, D>;
  static constexpr int kSmemBytes = TQ::kBytes + 2 * TKV::kBytes;  // Q, two K/V buffers
};

template <Family F, class E, class Shape, class V>
__global__ void __launch_bounds__(Shape::kThreads, Shape::kMinBlocks)
    flat_fwd_kernel(const __grid_constant__ FwdParams p, int n_m_blocks, int hq) {
  using TQ = typename Shape::TQ;
  using TKV = typename Shape::TKV;
  constexpr int kD = Shape::kD, kBM = Shape::kBlockM, kBN = Shape::kBlockN, kThreads = Shape::kThreads;
  constexpr int kMT = Shape::kMT, kNT = Shape::kNT, kDT = Shape::kDT, kCap = Shape::kCapBlocks;
  extern __shared__ __align__(128) unsigned char smem[];

  const TileCoord tc(n_m_blocks, hq);
  const BlockInfo bi(p, tc.b, tc.h);
  // the hooks' coordinates (unused ones cost nothing; the lengths only for a score that reads them)
  const auto at = with_lengths<typename V::Score>(ScoreAt{tc.b, tc.h, tc.h / p.group, 0, 0}, bi.nq, bi.nk, p.var);
  const int m0 = tc.m_block * kBM;
  if (m0 >= bi.nq) return;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const BandMask bm(p, bi.nq, bi.nk);
  const BlockRange<kBN> range(bm, m0, min(m0 + kBM, bi.nq) - 1);
  const int n_blocks = range.end - range.begin;  // <= kCap: the host checked Nk <= kCapN

  const auto* gq = static_cast<const std::uint16_t*>(p.q) + bi.q + m0 * p.q_n;
  const auto* gk = static_cast<const std::uint16_t*>(p.k) + bi.k;
  const auto* gv = static_cast<const std::uint16_t*>(p.v) + bi.v;
  const std::uint32_t sq = smem_u32(smem), sbuf = sq + TQ::kBytes;
  auto buffer = [&](int i) { return sbuf + static_cast<std::uint32_t>(i & 1) * TKV::kBytes; };

  load_tile<TQ, kD, kThreads>(sq, gq, p.q_n, bi.nq - m0, p.d, p.q, tid);
  copy_commit();
  if (n_blocks > 0) {
    const int n0 = range.begin * kBN;
    load_tile<TKV, kD, kThreads>(buffer(0), gk + n0 * p.k_n, p.k_n, bi.nk - n0, p.d, p.k, tid);
  }
  copy_commit();

  const int warp_row0 = warp * kMT * 16;
  const std::uint32_t aq = TQ::offset(warp_row0 + a_row(lane), a_col(lane));
  const std::uint32_t bk = TKV::offset(b_row(lane), b_col(lane));
  const std::uint32_t av = TKV::offset(a_row(lane), a_col(lane));
  const int row = m0 + warp_row0 + (lane >> 2);
  const int col = 2 * (lane & 3);

  // Phase 1: the whole logit row block, S = Q K^T block by block, into registers.
  float s[kCap][kMT][kNT][4];
#pragma unroll
  for (int i = 0; i < kCap; ++i) {
    if (i < n_blocks) {
      const int n0 = (range.begin + i) * kBN;
      copy_wait<0>();
      __syncthreads();  // K(i) visible; every warp is done with the buffer written next
      if (i + 1 < n_blocks) {
        load_tile<TKV, kD, kThreads>(buffer(i + 1), gk + (n0 + kBN) * p.k_n, p.k_n, bi.nk - n0 - kBN, p.d, p.k, tid);
      } else {
        const int v0 = range.begin * kBN;
        load_tile<TKV, kD, kThreads>(buffer(i + 1), gv + v0 * p.v_n, p.v_n, bi.nk - v0, p.d, p.v, tid);
      }
      copy_commit();
      gemm_qk<E, TQ, TKV, kMT, kNT, kD>(s[i], sq, aq, buffer(i), bk);
      apply_score<V, Layout::query_major>(s[i], p, range.needs_mask(range.begin + i), bm, row, n0 + col, at);
    }
  }

  // Phase 2: exact softmax over the full row (max first, then exp and sum; no rescale).
  float m[kMT][2], l[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < kCap; ++i)
        if (i < n_blocks) mx = row_max(s[i][mt], h, mx);
      mx = quad_max(mx);
      const float ms = scaled_max(mx, p.mul);
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < kCap; ++i)
        if (i < n_blocks) sum += exp_row(s[i][mt], h, p.mul, ms);
      m[mt][h] = mx;
      l[mt][h] = sum;
    }

  // Phase 3: O = P V, V blocks streaming through the buffers after the last K block.
  float o[kMT][kDT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.f;
#pragma unroll
  for (int i = 0; i < kCap; ++i) {
    if (i < n_blocks) {
      copy_wait<0>();
      __syncthreads();  // V(i) visible; every warp is done with the buffer written next
      if (i + 1 < n_blocks) {
        const int n0 = (range.begin + i + 1) * kBN;
        load_tile<TKV, kD, kThreads>(buffer(n_blocks + i + 1), gv + n0 * p.v_n, p.v_n, bi.nk - n0, p.d, p.v, tid);
      }
      copy_commit();
      std::uint32_t pa[kMT][kNT / 2][4];
      pack_probs<E, V>(s[i], pa, p, row, (range.begin + i) * kBN + col, at);
      gemm_pv<E, TKV, kMT, kNT, kDT>(o, pa, buffer(n_blocks + i), av);
    }
  }

  copy_wait<0>();
  __syncthreads();

  float inv[kMT][2], lse[kMT][2];
  finalize_rows(m, l, inv, lse, p.mul);
  add_sinks(inv, lse, p.sinks, tc.h);
  scale_output_for_dropout<V>(inv, p);
  if (n_blocks > kCap) {  // max_seqlen_k understated a varlen length: poison rather than truncate
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) inv[mt][0] = inv[mt][1] = lse[mt][0] = lse[mt][1] = NAN;
  }
  store_lse(lse, p, bi, row, lane);
  auto* go = static_cast<std::uint16_t*>(p.o) + bi.o + m0 * p.o_n;
  store_out<E, TQ, kMT, kDT>(o, inv, smem, warp_row0, lane, go, p.o_n, bi.nq - m0, p.d);
}

}  // namespace flatattn::cuda
