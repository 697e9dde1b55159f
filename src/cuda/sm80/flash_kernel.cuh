// Flash-dataflow forward (FlashAttention-2, Dao 2023, Alg. 1 and Sec. 3): one CTA per (query block of
// BlockM rows, query head, sequence); each warp owns 16 * kMT query rows (Q split across warps, so
// warps never exchange partial results); K/V blocks of BlockN keys stream through shared memory; the
// running max/sum rescale the output accumulator once per block, the division by the sum happens once
// at the end. Only key blocks that can hold a visible key are visited (causal and window skip the
// rest) and only blocks crossing the band's edges are masked per element.
//
// Pipeline per key block, Stages = 1 (K and V single-buffered, copies overlap the math as in FA2):
//   wait K(j) | barrier | issue V(j) | S = Q K(j)^T, logits, mask | wait V(j) | barrier |
//   issue K(j+1) | online softmax | O += P V(j)
// Stages = 2 (K and V double-buffered: one barrier per block, the next block's copies overlap the
// whole current block):
//   wait K(j), V(j) | barrier | issue K(j+1), V(j+1) | S = Q K(j)^T, logits, mask | softmax | O += P V(j)
// A staged bias (common/bias_tile.cuh) is copied with K(j) into its stage's slot and read by the score hook.
#pragma once

#include <cstdint>

#include "src/cuda/common/bias_tile.cuh"
#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/copy.cuh"
#include "src/cuda/common/mask.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/score.cuh"
#include "src/cuda/common/smem_tile.cuh"
#include "src/cuda/common/softmax.cuh"
#include "src/cuda/common/sparse.cuh"
#include "src/cuda/common/tile_coord.cuh"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/common/tile_io.cuh"
#include "src/cuda/common/warp_gemm.cuh"

namespace flatattn::cuda {

/// Compile-time shape of a Flash kernel: head dim D and a row T of the policy table (policy/tile_size.h,
/// flash_tile) or a tuner's candidate.
template <int D, FlashTileSize T>
struct FlashShape {
  static constexpr bool kLazyRescale = T.lazy_rescale;  ///< see online_softmax (common/softmax.cuh)
  static constexpr int kD = D, kBlockM = T.block_m, kBlockN = T.block_n, kWarps = T.warps, kMinBlocks = T.min_blocks;
  static constexpr int kStages = T.stages;  ///< K/V buffers: 1 (FA2 pipeline) or 2 (double-buffered)
  static_assert(kStages == 1 || kStages == 2, "one or two K/V stages");
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kMT = kBlockM / (16 * kWarps);  ///< 16-row m-tiles per warp
  static constexpr int kNT = kBlockN / 8;               ///< 8-key n-tiles of S
  static constexpr int kDT = D / 8;                     ///< 8-wide n-tiles of O
  static_assert(kMT * 16 * kWarps == kBlockM, "BlockM must be 16 * Warps * (m-tiles per warp)");
  static_assert(kBlockN % 16 == 0 && D % 32 == 0, "BlockN multiple of 16, D multiple of 32");
  using TQ = SmemTile<kBlockM, D>;
  using TKV = SmemTile<kBlockN, D>;
  static constexpr int kSmemBytes = TQ::kBytes + 2 * kStages * TKV::kBytes;  // Q | K0 V0 | K1 V1
  /// The staged bias of variant V on family F (common/bias_tile.cuh): a slot per K/V stage after the K/V
  /// buffers, filled with K(j); off (the global reads of bias_at) when its f32 worst case does not fit.
  template <Family F, class V>
  using Bias = BiasTileFor<V, F, kBlockM, kBlockN, kThreads, kStages, kSmemBytes>;
};

/// The kernel's body. kSparse (issue 16, docs/sparse.md): the key blocks are the CTA's block lists in *sp
/// (common/sparse.cuh) instead of the band's contiguous range; false compiles to the dense kernel.
template <Family F, class E, class Shape, class V, bool kSparse>
FLATATTN_DEVICE void flash_fwd_body(const FwdParams& p, const SparseSpec* sp, int n_m_blocks, int hq) {
  using TQ = typename Shape::TQ;
  using TKV = typename Shape::TKV;
  constexpr int kD = Shape::kD, kBM = Shape::kBlockM, kBN = Shape::kBlockN, kThreads = Shape::kThreads;
  constexpr int kMT = Shape::kMT, kNT = Shape::kNT, kDT = Shape::kDT;
  extern __shared__ __align__(128) unsigned char smem[];

  const TileCoord tc(n_m_blocks, hq);
  const BlockInfo bi(p, tc.b, tc.h);
  // the hooks' coordinates (unused ones cost nothing; the lengths only for a score that reads them)
  const auto at = with_lengths<typename V::Score>(ScoreAt{tc.b, tc.h, tc.h / p.group, 0, 0}, bi.nq, bi.nk, p.var);
  const int m0 = tc.m_block * kBM;
  if (m0 >= bi.nq) return;  // varlen: this sequence is shorter than the longest
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const BandMask bm(p, bi.nq, bi.nk);
  const BlockRange<kBN> range(bm, m0, min(m0 + kBM, bi.nq) - 1);

  const auto* gq = static_cast<const std::uint16_t*>(p.q) + bi.q + m0 * p.q_n;
  const auto* gk = static_cast<const std::uint16_t*>(p.k) + bi.k;
  const auto* gv = static_cast<const std::uint16_t*>(p.v) + bi.v;
  constexpr int kStages = Shape::kStages;
  const std::uint32_t sq = smem_u32(smem);
  // Buffers of key block j: K at kbuf(j), V right after it; two stages alternate on j's parity.
  auto kbuf = [&](int j) { return sq + TQ::kBytes + (kStages == 2 ? (j & 1) * 2 * TKV::kBytes : 0); };
  // The bias tile of key block j travels with K(j) (nothing when the instance does not stage one).
  const typename Shape::template Bias<F, V> bias(p.var, tc.b, tc.h, sq + Shape::kSmemBytes);
  auto load_k = [&](int j) {
    const int n0 = j * kBN;
    load_tile<TKV, kD, kThreads>(kbuf(j), gk + n0 * p.k_n, p.k_n, bi.nk - n0, p.d, p.k, tid);
    bias.load(j, m0, n0, tid);
  };
  auto load_v = [&](int j) {
    const int n0 = j * kBN;
    load_tile<TKV, kD, kThreads>(kbuf(j) + TKV::kBytes, gv + n0 * p.v_n, p.v_n, bi.nk - n0, p.d, p.v, tid);
  };

  // Block-sparse: this CTA's list (its rows lie in one query block of the lists).
  int sparse_r = 0;
  if constexpr (kSparse) sparse_r = m0 / sp->block_q;
  const SparseKeyBlocks<kBN> list(kSparse ? sp : nullptr, tc.b, tc.h, sparse_r, bi.nk);
  const int first = kSparse ? list.next(0) : range.begin;
  const bool any = kSparse ? first < list.total : range.begin < range.end;
  const int first_nb = kSparse ? (any ? list.at(first).nb : 0) : range.begin;

  load_tile<TQ, kD, kThreads>(sq, gq, p.q_n, bi.nq - m0, p.d, p.q, tid);
  copy_commit();
  if (any) {
    load_k(first_nb);
    if constexpr (kStages == 2) load_v(first_nb);
  }
  copy_commit();

  const int warp_row0 = warp * kMT * 16;
  const std::uint32_t aq = TQ::offset(warp_row0 + a_row(lane), a_col(lane));
  const std::uint32_t bk = TKV::offset(b_row(lane), b_col(lane));
  const std::uint32_t av = TKV::offset(a_row(lane), a_col(lane));
  const int row = m0 + warp_row0 + (lane >> 2);  // this thread's row of m-tile 0
  const int col = 2 * (lane & 3);                // its first column within a key block

  float o[kMT][kDT][4];
  float m[kMT][2], l[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
  }

  if constexpr (kSparse) {
    // The CTA's block list (common/sparse.cuh), the same pipeline as the dense loop below (kept verbatim
    // there so the dense kernel's code does not move: issue 16 rule). Full blocks see every key inside the
    // sequence: only the ragged end is masked (a band-free BandMask); partial blocks take the rule: the band
    // itself, or the bits / local + global on top of the ragged end.
    BandMask ends = bm;
    ends.left = -1, ends.right = -1;
    for (int it = first; it < list.total;) {
      const SparseStep st = list.at(it);
      const int nb = st.nb;
      const int nxt = list.next(it + 1);
      const bool has_next = nxt < list.total;
      const int next = has_next ? list.at(nxt).nb : 0;
      copy_wait<0>();
      __syncthreads();  // K(nb) (and V(nb) with 2 stages) visible to all; every warp is done with the last block
      if constexpr (kStages == 2) {
        if (has_next) {
          load_k(next);
          load_v(next);
        }
      } else {
        load_v(nb);
      }
      copy_commit();

      float s[kMT][kNT][4];
      gemm_qk<E, TQ, TKV, kMT, kNT, kD>(s, sq, aq, kbuf(nb), bk);
      const bool band = st.partial && sp->rule == SparseRule::band;
      const bool ragged = (nb + 1) * kBN > bi.nk;
      bias.template score<V, Layout::query_major>(s, p, ragged || band, band ? bm : ends, row, nb * kBN + col, at, nb,
                                                  m0, nb * kBN);
      if (st.partial && sp->rule != SparseRule::band)
        apply_sparse_rule(s, *sp, p, st, tc.b, tc.h, sparse_r, bi.nq, bi.nk, row, nb * kBN + col);

      if constexpr (kStages == 1) {
        copy_wait<0>();
        __syncthreads();  // V(nb) visible to all; every warp is done with K(nb)
        if (has_next) load_k(next);
        copy_commit();
      }

      online_softmax<Shape::kLazyRescale>(s, o, m, l, p.mul);
      std::uint32_t pa[kMT][kNT / 2][4];
      pack_probs<E, V>(s, pa, p, row, nb * kBN + col, at);
      gemm_pv<E, TKV, kMT, kNT, kDT>(o, pa, kbuf(nb) + TKV::kBytes, av);
      it = nxt;
    }
  } else {
  for (int nb = range.begin; nb < range.end; ++nb) {
    copy_wait<0>();
    __syncthreads();  // K(nb) (and V(nb) with 2 stages) visible to all; every warp is done with block nb-1
    if constexpr (kStages == 2) {
      if (nb + 1 < range.end) {
        load_k(nb + 1);
        load_v(nb + 1);
      }
    } else {
      load_v(nb);
    }
    copy_commit();

    float s[kMT][kNT][4];
    gemm_qk<E, TQ, TKV, kMT, kNT, kD>(s, sq, aq, kbuf(nb), bk);
    bias.template score<V, Layout::query_major>(s, p, range.needs_mask(nb), bm, row, nb * kBN + col, at, nb, m0,
                                                nb * kBN);

    if constexpr (kStages == 1) {
      copy_wait<0>();
      __syncthreads();  // V(nb) visible to all; every warp is done with K(nb)
      if (nb + 1 < range.end) load_k(nb + 1);
      copy_commit();
    }

    online_softmax<Shape::kLazyRescale>(s, o, m, l, p.mul);
    std::uint32_t pa[kMT][kNT / 2][4];
    pack_probs<E, V>(s, pa, p, row, nb * kBN + col, at);
    gemm_pv<E, TKV, kMT, kNT, kDT>(o, pa, kbuf(nb) + TKV::kBytes, av);
  }
  }  // kSparse

  copy_wait<0>();
  __syncthreads();  // the Q copy has landed even when no key block was visited

  float inv[kMT][2], lse[kMT][2];
  finalize_rows(m, l, inv, lse, p.mul);
  add_sinks(inv, lse, p.sinks, tc.h);
  scale_output_for_dropout<V>(inv, p);
  store_lse(lse, p, bi, row, lane);
  auto* go = static_cast<std::uint16_t*>(p.o) + bi.o + m0 * p.o_n;
  store_out<E, TQ, kMT, kDT>(o, inv, smem, warp_row0, lane, go, p.o_n, bi.nq - m0, p.d);
}

template <Family F, class E, class Shape, class V>
__global__ void __launch_bounds__(Shape::kThreads, Shape::kMinBlocks)
    flash_fwd_kernel(const __grid_constant__ FwdParams p, int n_m_blocks, int hq) {
  flash_fwd_body<F, E, Shape, V, false>(p, nullptr, n_m_blocks, hq);
}

/// The block-sparse forward (issue 16): the same body over the CTA's block lists.
template <Family F, class E, class Shape, class V>
__global__ void __launch_bounds__(Shape::kThreads, Shape::kMinBlocks)
    flash_fwd_sparse_kernel(const __grid_constant__ FwdParams p, const __grid_constant__ SparseSpec sp,
                            int n_m_blocks, int hq) {
  flash_fwd_body<F, E, Shape, V, true>(p, &sp, n_m_blocks, hq);
}

}  // namespace flatattn::cuda
