// Warp-specialized Flash forward on Hopper (sm_90a; FlashAttention-3, Shah et al. 2024, Sec. 3.1): one CTA per
// (128 or 192 query rows, query head, sequence) with three or four warpgroups:
//   warpgroup 0, producer: gives its registers away (setmaxnreg.dec to kProducerRegs); one thread loads the
//     CTA's Q tile once and then K(j), V(j) of every key block into the K/V ring (pipeline.cuh) with the
//     bulk tensor copy engine (tma.cuh), waiting for each slot to be released first;
//   warpgroups 1.., consumers (setmaxnreg.inc to kConsumerRegs): 64 query rows each, S = Q K^T and
//     O += P V with wgmma and the online softmax in registers (ws_fwd_mainloop.cuh), then the epilogue
//     (ws_fwd_epilogue.cuh).
// The hooks and the mask are the variant seam's (common/score.cuh), the visited key blocks the band's
// (common/mask.cuh BlockRange), the grid order common/tile_coord.cuh's (heaviest query blocks first).
// Batched problems (tensor maps (D, N, H, B)) and varlen ones (kVarlen: maps over the packed rows, (D, total, H, 1)).
// The persistent variant (one CTA per SM walking its tiles, issue 17) is ws_fwd_persistent.cuh; it shares the
// producer's loads (ws_load_q, ws_load_kv), the mainloop and the epilogue. Block-sparse calls (issue 16,
// docs/sparse.md) run its body too (ws_fwd_sparse_kernel there): producer and consumers walk the tile's block lists
// (common/sparse.cuh SparseKeyBlocks::take, the same order in both) instead of the band's range; unlisted blocks
// cost no copy and no product; the ring counts visited blocks. A tile with no listed block loads Q only and stores
// O = 0, LSE = -inf (the consumers' turns still pair up: ws_fwd_mainloop.cuh).
// Picked by the cost model (src/cuda/policy/heuristics.h choose_sm90_ws; src/cuda/policy/ws_policy.h) where it
// predicts it faster than sm90/flash_kernel.cuh, or
// forced by FLATATTN_CUDA_SM90_WS=1|2|3 (src/cuda/family.h).
// kSched: the consumers' schedule (ws_fwd_mainloop.cuh; FLATATTN_CUDA_SM90_WS's value). Compile-time switches:
// FLATATTN_SM90_WS_WATCHDOG_NS and FLATATTN_SM90_WS_DEBUG (tma.cuh).
#pragma once

#include <cuda.h>

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/mask.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/score.cuh"
#include "src/cuda/common/smem_tile.cuh"
#include "src/cuda/common/tile_coord.cuh"
#include "src/cuda/policy/ws_tile.h"
#include "src/cuda/sm90/pipeline.cuh"
#include "src/cuda/sm90/tma.cuh"
#include "src/cuda/sm90/warp_roles.cuh"
#include "src/cuda/sm90/ws_fwd_epilogue.cuh"
#include "src/cuda/sm90/ws_fwd_mainloop.cuh"

namespace flatattn::cuda::sm90 {

/// Compile-time shape of the warp-specialized forward at head dim D, from D's row in policy/ws_tile.h: 64 query rows
/// per consumer warpgroup (128 rows, two consumers; the row may ask for 192 and three), the key block and the
/// ring depth (D = 64: 128 keys, 3 slots; D = 128: 128 keys, 2 slots; D = 256: 64 keys, 2 slots).
template <int D>
struct WsShape {
  static constexpr WsTile kTile = ws_tile(D);
  static_assert(kTile.block_n > 0, "no warp-specialized forward at this head dim (policy/ws_tile.h)");
  static_assert(kTile.block_m == 64 * kTile.consumers, "one consumer warpgroup per 64 query rows");
  static constexpr int kD = D, kBlockM = kTile.block_m, kBlockN = kTile.block_n;
  static constexpr int kStages = kTile.stages;
  static constexpr bool kLazyRescale = true;
  static constexpr int kConsumerWGs = kTile.consumers;
  static constexpr int kThreads = 128 * (1 + kConsumerWGs);
  static constexpr int kConsumerThreads = 128 * kConsumerWGs;
  // Two consumers: 24 x 128 + 240 x 256 = 64512 <= 65536 registers (FlashAttention-3's split); three:
  // 24 x 128 + 160 x 384 = 64512.
  static constexpr int kProducerRegs = kWsProducerRegs, kConsumerRegs = kTile.consumer_regs;
  static constexpr int kNT = kBlockN / 8, kDT = D / 8;
  using TQ = SmemTile<kBlockM, D>;
  using TKV = SmemTile<kBlockN, D>;
  static_assert(TQ::kW == 64 && TKV::kW == 64, "one TMA box = one 64-column panel (128-byte swizzle)");
  using Ring = KvRing<kStages, TKV::kBytes, kConsumerThreads>;
  /// Q | (K V) x Stages | barriers, plus 1024 bytes to align the base to the swizzle atom.
  static constexpr int kSmemBytes = TQ::kBytes + 2 * kStages * TKV::kBytes + Ring::kBarrierBytes + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "the tile's shared memory exceeds Hopper's 227 KB per block");
};

/// The kernel's parameters: the common FwdParams and the three tensor maps (built by the launcher).
struct WsParams {
  FwdParams p;
  CUtensorMap tq, tk, tv;
};

/// The producer's Q load: the tile's Q (q_row: its first row in the map's rows) on the ring's Q barrier.
template <class S, class Ring>
FLATATTN_DEVICE void ws_load_q(const WsParams& wp, const Ring& ring, std::uint32_t sq, int q_row, int h, int b) {
  using TQ = typename S::TQ;
  constexpr int kPanels = S::kD / 64;
  mbar_arrive_expect_tx(ring.q_bar(), TQ::kBytes);
#pragma unroll
  for (int c = 0; c < kPanels; ++c) tma_load_4d(sq + c * TQ::kBlockBytes, &wp.tq, ring.q_bar(), 64 * c, q_row, h, b);
}

/// The producer's load of K(nb), V(nb) into the slot of ring iteration it, each once the consumers have released it
/// (k_row0: the sequence's first k/v row in the map's rows, hk: the kv head).
template <class S, class Ring>
FLATATTN_DEVICE void ws_load_kv(const WsParams& wp, const Ring& ring, int it, int nb, int k_row0, int hk, int b) {
  using TKV = typename S::TKV;
  constexpr int kPanels = S::kD / 64;
  const int s = Ring::slot(it), n0 = k_row0 + nb * S::kBlockN;
  ring.acquire_k(it);
  mbar_arrive_expect_tx(ring.bar(s, 0), TKV::kBytes);
#pragma unroll
  for (int c = 0; c < kPanels; ++c) tma_load_4d(ring.k(s) + c * TKV::kBlockBytes, &wp.tk, ring.bar(s, 0), 64 * c, n0, hk, b);
  ring.acquire_v(it);
  mbar_arrive_expect_tx(ring.bar(s, 1), TKV::kBytes);
#pragma unroll
  for (int c = 0; c < kPanels; ++c) tma_load_4d(ring.v(s) + c * TKV::kBlockBytes, &wp.tv, ring.bar(s, 1), 64 * c, n0, hk, b);
}

/// q_row: the tile's first q row in the map's rows (batched: m0; varlen: the sequence's first packed row + m0),
/// k_row0: the sequence's first k/v row (batched 0), b: the map's batch index (varlen 0: one packed batch).
template <class E, class S>
FLATATTN_DEVICE void ws_producer(const WsParams& wp, const typename S::Ring& ring, std::uint32_t sq,
                                 const BlockRange<S::kBlockN>& range, int q_row, int k_row0, int h, int b) {
  const int hk = h / wp.p.group;
  tma_prefetch(&wp.tq);
  tma_prefetch(&wp.tk);
  tma_prefetch(&wp.tv);
  ws_load_q<S>(wp, ring, sq, q_row, h, b);
  for (int nb = range.begin; nb < range.end; ++nb) ws_load_kv<S>(wp, ring, nb - range.begin, nb, k_row0, hk, b);
}

/// The kernel's body. kVarlen: the maps are (D, total rows, H, 1) over the packed rows (cu_seqlens); a tile's rows
/// start at its sequence's first row, rows of the next sequence in its boxes are loaded but masked (keys: BandMask's
/// Nk) or never stored (queries: the epilogue's bound).
template <class E, class S, class V, int kSched, bool kVarlen>
FLATATTN_DEVICE void ws_fwd_body(const WsParams& wp, int n_m_blocks, int hq) {
  using TQ = typename S::TQ;
  using Ring = typename S::Ring;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const FwdParams& p = wp.p;

  const TileCoord tc(n_m_blocks, hq);
  const BlockInfo bi(p, tc.b, tc.h);
  const int m0 = tc.m_block * S::kBlockM;
  if (m0 >= bi.nq) return;  // uniform over the CTA, before any barrier
  const BandMask bm(p, bi.nq, bi.nk);
  const BlockRange<S::kBlockN> range(bm, m0, min(m0 + S::kBlockM, bi.nq) - 1);

  const std::uint32_t raw = smem_u32(smem_raw);
  const std::uint32_t sq = (raw + 1023u) & ~1023u;  // swizzle atoms start 1024-byte aligned
  unsigned char* smem = smem_raw + (sq - raw);
  Ring ring;
  ring.tiles = sq + TQ::kBytes;
  ring.bars = ring.tiles + 2 * S::kStages * S::TKV::kBytes;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  // The role index through a shuffle: ptxas sees it is warp-uniform (the register reallocation needs it).
  const int wg = __shfl_sync(0xffffffffu, tid / 128, 0);
  if (tid == 0) ring.init();
  __syncthreads();

  if (wg == 0) {
    regs_dec<S::kProducerRegs>();
    if (tid == 0) {
      if constexpr (kVarlen) {
        ws_producer<E, S>(wp, ring, sq, range, bi.q_row0 + m0, bi.k_row0, tc.h, 0);
      } else {
        ws_producer<E, S>(wp, ring, sq, range, m0, 0, tc.h, tc.b);
      }
    }
  } else {
    regs_inc<S::kConsumerRegs>();
    const int c = wg - 1, warp_row0 = c * 64 + (warp & 3) * 16;
    const int row = m0 + warp_row0 + (lane >> 2), col = 2 * (lane & 3);
    const auto at = with_lengths<typename V::Score>(ScoreAt{tc.b, tc.h, tc.h / p.group, 0, 0}, bi.nq, bi.nk, p.var);
    mbar_wait(ring.q_bar(), 0, 999);
    WsAcc<S::kDT> acc;
    ws_consumer_mainloop<E, S, V, Ring, kSched>(acc, p, ring, sq + c * 64 * TQ::kRowBytes, bm, range, row, col, at, c);
    ws_consumer_epilogue<E, S, V>(acc, p, bi, tc.h, smem, m0, warp_row0, row, lane);
  }
}

/// The dense kernel (batched, or kVarlen: see ws_fwd_body).
template <class E, class S, class V, int kSched, bool kVarlen>
__global__ void __launch_bounds__(S::kThreads, 1)
    ws_fwd_kernel(const __grid_constant__ WsParams wp, int n_m_blocks, int hq) {
  ws_fwd_body<E, S, V, kSched, kVarlen>(wp, n_m_blocks, hq);
}

}  // namespace flatattn::cuda::sm90
