// The backward CTA's helpers, shared by both backward families (sm80/bwd_kernel.cuh, sm90/bwd_kernel.cuh):
// which key block, kv head and sequence a CTA owns (BwdTile), the bases of its group's first query head
// and the per-step row loads (BwdHeadBases), and the store of its dK and dV (store_dk_dv).
#pragma once

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/bwd_params.h"
#include "src/cuda/common/bwd_rows.cuh"
#include "src/cuda/common/copy.cuh"
#include "src/cuda/common/frag_store.cuh"
#include "src/cuda/common/tile_io.cuh"

namespace flatattn::cuda {

/// Which key block, kv head and sequence a CTA owns: key blocks of one head together (they share Q and
/// dO in L2), first block first (the longest under causal masks).
struct BwdTile {
  int n_block, hk, b;
  FLATATTN_DEVICE explicit BwdTile(const BwdParams& p) {
    const int t = static_cast<int>(blockIdx.x);
    const int head = t / p.n_n_blocks;  // (sequence, kv head)
    n_block = t % p.n_n_blocks;
    hk = head % p.hkv;
    b = head / p.hkv;
  }
};

/// The first query head h0 of a CTA's kv-head group and its bases, so that a step visiting head
/// h0 + hh adds hh times a head stride instead of recomputing a sequence's offsets (varlen: cu_seqlens
/// loads): the Q, dO and LSE rows of h0 and its workspace row ws0 (workspace head stride ws_h).
struct BwdHeadBases {
  std::int64_t ws0, ws_h;
  const std::uint16_t* q;
  const std::uint16_t* dout;
  const float* lse;
  FLATATTN_DEVICE BwdHeadBases(const BwdParams& p, const BwdTile& tile) {
    const int h0 = tile.hk * p.f.group;
    const BlockInfo bi0(p.f, tile.b, h0);
    const BwdRowInfo ri0(p, tile.b, h0);
    ws0 = p.ws_row(h0, tile.b);
    ws_h = static_cast<std::int64_t>(p.batch) * p.f.nq;
    q = static_cast<const std::uint16_t*>(p.f.q) + bi0.q;
    dout = static_cast<const std::uint16_t*>(p.dout) + ri0.dout;
    lse = p.f.lse + bi0.lse;
  }

  /// A step's per-row values for query head h0 + hh, rows m0 .. m0 + BlockM - 1, into shared memory at
  /// `rows` as fp32 [LSE x BlockM | D_i x BlockM | u_i x BlockM] (u_i, the deterministic dQ unit: that
  /// mode only), 0 past nq_rows; one 4-byte cp.async per value.
  template <int BlockM, int Threads>
  FLATATTN_DEVICE void load_rows(const BwdParams& p, std::uint32_t rows, int hh, int m0, int nq_rows, int tid) const {
    const float* const lse_h = lse + hh * p.f.lse_h;
    const std::int64_t ws = ws0 + hh * ws_h;
    const int n = (p.deterministic ? 3 : 2) * BlockM;
#pragma unroll
    for (int j0 = 0; j0 < 3 * BlockM; j0 += Threads) {
      const int j = j0 + tid;
      if (j < n) {
        const int part = j / BlockM, r = m0 + j - part * BlockM;
        const bool ok = r < nq_rows;
        const float* src = part == 0 ? lse_h + std::int64_t{r} * p.f.lse_n : (part == 1 ? p.dsum : p.dq_unit) + ws + r;
        copy_4(rows + 4 * j, ok ? static_cast<const void*>(src) : p.dsum, ok);
      }
    }
  }
};

/// Element offsets of the CTA's first key row (key n0 of its sequence, kv head tile.hk) in dK and dV.
struct DkDvRows {
  std::int64_t dk, dv;
  FLATATTN_DEVICE DkDvRows(const BwdParams& p, const BwdTile& tile, int n0) {
    std::int64_t k0 = 0;
    int b = tile.b;
    if (p.f.cu_k != nullptr) {  // bounded as BlockInfo's (a bad sequence has nk = 0 and never stores)
      k0 = seq_rows(p.f.cu_k, b, p.f.total_k, p.f.nk, kMetaCuK, kMetaMaxK).start;
      b = 0;
    }
    dk = b * p.dk_b + (k0 + n0) * p.dk_n + tile.hk * p.dk_h;
    dv = b * p.dv_b + (k0 + n0) * p.dv_n + tile.hk * p.dv_h;
  }
};

/// The CTA's dK and dV, staged in the K and V tiles of shared memory (sk, sv), -> the global rows of
/// its key block (keys n0 .. nk - 1 of the sequence, kv head tile.hk).
template <class TKV, int D, int Threads>
FLATATTN_DEVICE void store_dk_dv(const BwdParams& p, const BwdTile& tile, int n0, int nk, const unsigned char* sk,
                                 const unsigned char* sv, int tid) {
  const DkDvRows at(p, tile, n0);
  store_tile<TKV, D, Threads>(sk, static_cast<std::uint16_t*>(p.dk) + at.dk, p.dk_n, nk - n0, p.f.d, tid);
  store_tile<TKV, D, Threads>(sv, static_cast<std::uint16_t*>(p.dv) + at.dv, p.dv_n, nk - n0, p.f.d, tid);
}

/// p.grad_f32: a warp's dK (times the scale) and dV fragments straight to the fp32 global rows of the key block,
/// unrounded (rows row0.., columns col0.. of the block as in FragStore); the 16-bit path's store_dk_dv would round
/// exactly these values.
template <int kMT, int kNT>
FLATATTN_DEVICE void store_dk_dv_f32(const BwdParams& p, const BwdTile& tile, int n0, int nk,
                                     const float (&dk)[kMT][kNT][4], const float (&dv)[kMT][kNT][4], int row0,
                                     int col0, int lane) {
  const DkDvRows at(p, tile, n0);
  store_frags_f32(dk, p.ds_scale, static_cast<float*>(p.dk) + at.dk, p.dk_n, row0, col0, nk - n0, p.f.d, lane);
  store_frags_f32(dv, 1.f, static_cast<float*>(p.dv) + at.dv, p.dv_n, row0, col0, nk - n0, p.f.d, lane);
}

}  // namespace flatattn::cuda
