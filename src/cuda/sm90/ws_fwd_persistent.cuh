// The persistent variant of the warp-specialized forward (ws_fwd_kernel.cuh; FlashAttention-3, Shah et al. 2024,
// Sec. 3): at most one CTA per SM, each walking its tiles (ws_tile_scheduler.cuh) with the same roles, loops and
// epilogue as the one-tile kernel, so that a CTA's pipeline fill and epilogue overlap its neighbouring tiles' work
// instead of a new CTA's launch. Dense batched and varlen problems (chosen per call by the cost model, src/cuda/ws_route.h
// ws_persistent_dense, or by FLATATTN_CUDA_SM90_WS_PERSISTENT=0|1|rule, src/cuda/family.h), and the block-sparse
// kernel (issue 16): a tile's key blocks are its block lists (common/sparse.cuh SparseKeyBlocks::take, the same walk for
// producer and consumers, who count the same ring iterations); launched with one CTA per tile it is the one-tile
// sparse kernel, with at most one per SM the persistent one (policy/ws_policy.h kWsPersistentSparse).
//
// Across tiles (both roles skip the same tiles -- rows past the sequence's Nq -- and count the same key blocks):
//   the K/V ring's iteration count continues: tile i's blocks are iterations it0(i) .. it0(i) + blocks(i) - 1,
//     it0(i) the blocks of the CTA's earlier tiles, so slots and phases need no reset;
//   the Q tile has an "empty" barrier (pipeline.cuh kQEmpty): the consumers arrive on it after their epilogue
//     (which stores O through the Q tile's shared memory), the producer waits on it before the next tile's Q load
//     (the n-th: parity (n & 1) ^ 1; consumers wait q_bar in parity n & 1). The producer loads the next tile's
//     first K/V block into its free slot before that wait, so it lands while the consumers run the epilogue;
//   a tile with no key block (fully masked, Nk = 0) still loads Q and runs the epilogue (O = 0, LSE = -inf), as in
//     the one-tile kernel: both roles count its Q load;
//   ping-pong (schedule 2): the mainloop's turns are balanced within each tile (both consumer warpgroups walk the
//     tile's blocks: the same number of turns, the hand-overs around the loop pair up even with 0 blocks), and a
//     consumer's first arrival of tile i + 1 comes after q_bar of tile i + 1, i.e. after every consumer's q_empty
//     arrival of tile i, i.e. after the other consumer's last wait of tile i: no arrival of one tile can be taken
//     as one of another.
#pragma once

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/mask.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/score.cuh"
#include "src/cuda/common/sparse.cuh"
#include "src/cuda/common/tile_coord.cuh"
#include "src/cuda/sm90/pipeline.cuh"
#include "src/cuda/sm90/tma.cuh"
#include "src/cuda/sm90/warp_roles.cuh"
#include "src/cuda/sm90/ws_fwd_epilogue.cuh"
#include "src/cuda/sm90/ws_fwd_kernel.cuh"
#include "src/cuda/sm90/ws_fwd_mainloop.cuh"
#include "src/cuda/sm90/ws_tile_scheduler.cuh"

namespace flatattn::cuda::sm90 {

/// WsShape with the ring's q_empty barrier (8 more bytes of shared memory).
template <int D>
struct WsPersistentShape : WsShape<D> {
  using Base = WsShape<D>;
  using Ring = KvRing<Base::kStages, Base::TKV::kBytes, Base::kConsumerThreads, true>;
  static constexpr int kSmemBytes = Base::TQ::kBytes + 2 * Base::kStages * Base::TKV::kBytes + Ring::kBarrierBytes + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "the tile's shared memory exceeds Hopper's 227 KB per block");
};

/// A tile of the CTA's walk as both roles see it: its coordinates, sequence, first row, and key blocks.
template <class S>
struct WsPersistentTile {
  TileCoord tc;
  BlockInfo bi;
  int m0;
  FLATATTN_DEVICE WsPersistentTile(const FwdParams& p, int t, int n_m, int hq)
      : tc(t, n_m, hq), bi(p, tc.b, tc.h), m0(tc.m_block * S::kBlockM) {}
  /// Rows past the sequence's Nq (varlen: a shorter sequence): nothing to do, for both roles.
  [[nodiscard]] FLATATTN_DEVICE bool empty() const { return m0 >= bi.nq; }
  FLATATTN_DEVICE BlockRange<S::kBlockN> range(const BandMask& bm) const {
    return BlockRange<S::kBlockN>(bm, m0, min(m0 + S::kBlockM, bi.nq) - 1);
  }
  /// Block-sparse: the tile's lists (its rows lie in one query block of them: block_q is a multiple of kBlockM,
  /// checked at launch).
  FLATATTN_DEVICE WsSparseWalk<S::kBlockN> sparse_walk(const SparseSpec* sp) const {
    const int r = m0 / sp->block_q;
    return {SparseKeyBlocks<S::kBlockN>(sp, tc.b, tc.h, r, bi.nk), (bi.nk + sp->block_kv - 1) / sp->block_kv, tc.b, tc.h, r,
            bi.nq};
  }
};

/// The producer thread's walk: per tile its first K/V block, then (once the consumers have released the Q tile) Q,
/// then the other blocks. kSparse: a tile's blocks are its lists' (sp), in the consumers' order.
template <class S, bool kVarlen, bool kSparse>
FLATATTN_DEVICE void ws_persistent_producer(const WsParams& wp, const typename S::Ring& ring, std::uint32_t sq,
                                            const WsTileScheduler& sch, int hq, const SparseSpec* sp) {
  tma_prefetch(&wp.tq);
  tma_prefetch(&wp.tk);
  tma_prefetch(&wp.tv);
  int it = 0, n = 0;  // ring iterations, Q loads
  WsTileScheduler::Cursor cur = sch.start(blockIdx.x);
  for (int t; sch.next(cur, t, gridDim.x);) {
    const WsPersistentTile<S> tile(wp.p, t, sch.n_m, hq);
    if (tile.empty()) continue;
    const int h = tile.tc.h, hk = h / wp.p.group, b = kVarlen ? 0 : tile.tc.b;
    const int q_row = kVarlen ? tile.bi.q_row0 + tile.m0 : tile.m0, k_row0 = kVarlen ? tile.bi.k_row0 : 0;
    auto load_q = [&] {
      ring.acquire_q(n);
      ws_load_q<S>(wp, ring, sq, q_row, h, b);
      ++n;
    };
    if constexpr (kSparse) {
      const WsSparseWalk<S::kBlockN> walk = tile.sparse_walk(sp);
      typename SparseKeyBlocks<S::kBlockN>::Cursor w;
      SparseStep st = walk.list.take(w, walk.seq_blocks);
      if (st.nb >= 0) {
        ws_load_kv<S>(wp, ring, it++, st.nb, k_row0, hk, b);
        st = walk.list.take(w, walk.seq_blocks);
      }
      load_q();
      for (; st.nb >= 0; st = walk.list.take(w, walk.seq_blocks)) ws_load_kv<S>(wp, ring, it++, st.nb, k_row0, hk, b);
    } else {
      const BandMask bm(wp.p, tile.bi.nq, tile.bi.nk);
      const BlockRange<S::kBlockN> range = tile.range(bm);
      int nb = range.begin;
      if (nb < range.end) ws_load_kv<S>(wp, ring, it++, nb++, k_row0, hk, b);
      load_q();
      for (; nb < range.end; ++nb) ws_load_kv<S>(wp, ring, it++, nb, k_row0, hk, b);
    }
  }
}

/// The persistent kernels' body (kVarlen as ws_fwd_body; kSparse: the tiles' key blocks are sp's lists). sch: the walk
/// (ws_tile_scheduler.cuh), hq: query heads.
template <class E, class S, class V, int kSched, bool kVarlen, bool kSparse>
FLATATTN_DEVICE void ws_persistent_body(const WsParams& wp, const WsTileScheduler& sch, int hq, const SparseSpec* sp) {
  using TQ = typename S::TQ;
  using Ring = typename S::Ring;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const FwdParams& p = wp.p;

  const std::uint32_t raw = smem_u32(smem_raw);
  const std::uint32_t sq = (raw + 1023u) & ~1023u;  // swizzle atoms start 1024-byte aligned
  unsigned char* smem = smem_raw + (sq - raw);
  Ring ring;
  ring.tiles = sq + TQ::kBytes;
  ring.bars = ring.tiles + 2 * S::kStages * S::TKV::kBytes;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wg = __shfl_sync(0xffffffffu, tid / 128, 0);  // warp-uniform role index (ws_fwd_body)
  if (tid == 0) ring.init();
  __syncthreads();

  if (wg == 0) {
    regs_dec<S::kProducerRegs>();
    if (tid == 0) ws_persistent_producer<S, kVarlen, kSparse>(wp, ring, sq, sch, hq, sp);
  } else {
    regs_inc<S::kConsumerRegs>();
    const int c = wg - 1, warp_row0 = c * 64 + (warp & 3) * 16;
    int it = 0, n = 0;  // as the producer's
    WsTileScheduler::Cursor cur = sch.start(blockIdx.x);
    for (int t; sch.next(cur, t, gridDim.x);) {
      const WsPersistentTile<S> tile(p, t, sch.n_m, hq);
      if (tile.empty()) continue;
      const BandMask bm(p, tile.bi.nq, tile.bi.nk);
      const BlockRange<S::kBlockN> range = tile.range(bm);
      const int h = tile.tc.h, row = tile.m0 + warp_row0 + (lane >> 2), col = 2 * (lane & 3);
      const auto at = with_lengths<typename V::Score>(ScoreAt{tile.tc.b, h, h / p.group, 0, 0}, tile.bi.nq, tile.bi.nk, p.var);
      ring.wait_q(n);
      WsAcc<S::kDT> acc;
      if constexpr (kSparse) {
        const WsSparseWalk<S::kBlockN> walk = tile.sparse_walk(sp);
        it += ws_consumer_mainloop<E, S, V, Ring, kSched, true>(acc, p, ring, sq + c * 64 * TQ::kRowBytes, bm, range, row,
                                                                col, at, c, &walk, it);
      } else {
        it += ws_consumer_mainloop<E, S, V, Ring, kSched, false>(acc, p, ring, sq + c * 64 * TQ::kRowBytes, bm, range, row,
                                                                 col, at, c, nullptr, it);
      }
      ws_consumer_epilogue<E, S, V>(acc, p, tile.bi, h, smem, tile.m0, warp_row0, row, lane);
      ring.release_q();
      ++n;
    }
  }
}

/// The persistent kernel (dense).
template <class E, class S, class V, int kSched, bool kVarlen>
__global__ void __launch_bounds__(S::kThreads, 1)
    ws_fwd_persistent_kernel(const __grid_constant__ WsParams wp, const WsTileScheduler sch, int hq) {
  ws_persistent_body<E, S, V, kSched, kVarlen, false>(wp, sch, hq, nullptr);
}

/// The block-sparse kernel (issue 16): the same body over the tiles' block lists; a grid of one CTA per tile runs it
/// as the one-tile kernel (a separate function, so the dense kernel keeps its parameters and its code).
template <class E, class S, class V, int kSched, bool kVarlen>
__global__ void __launch_bounds__(S::kThreads, 1)
    ws_fwd_sparse_kernel(const __grid_constant__ WsParams wp, const WsTileScheduler sch, int hq,
                         const __grid_constant__ SparseSpec sp) {
  ws_persistent_body<E, S, V, kSched, kVarlen, true>(wp, sch, hq, &sp);
}

}  // namespace flatattn::cuda::sm90
