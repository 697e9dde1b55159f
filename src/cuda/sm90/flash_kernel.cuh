// Flash-dataflow forward on Hopper warpgroup MMA (sm_90a; FlashAttention-3, Shah et al. 2024, Sec. 3,
// without its TMA producer warp): one CTA per (query block of 64 * WGs rows, query head, sequence);
// each consumer warpgroup (4 warps, 128 threads) owns 64 query rows; K/V blocks of BlockN keys stream
// through a ring of `Stages` shared-memory buffers filled by cp.async from every thread.
//   S = Q K^T : wgmma m64n{BlockN}k16, A and B from shared memory
//   softmax   : online, on the fp32 accumulators in registers (common/softmax.cuh with one m-tile: the
//               accumulator layout of each warp is the m16n8 C layout)
//   O += P V  : wgmma m64n{D}k16, A = P from registers, B = V from shared memory (transposed)
// Only key blocks that can hold a visible key are visited and only blocks that cross the band are
// masked per element (common/mask.cuh); the logit hooks, normalization and the output store are the
// sm80 family's (common/warp_gemm.cuh, common/tile_io.cuh).
//
// Pipeline (FA3 Sec. 3.2, intra-warpgroup overlap): the softmax of block j runs while the tensor cores
// do P(j-1) V(j-1); buffers b = j mod Stages, the copies of block j + Stages - 2 fly during blocks
// j .. j + Stages - 3 (block j - 2's buffers are free: its P V was waited in iteration j - 1):
//   wait K/V(j) | proxy fence + barrier | issue K/V(j + Stages - 2) | issue S(j) = Q K(j)^T, then
//   O += P(j-1) V(j-1) | wait S(j) | logits, mask, row max/exp/sum | wait O | rescale O, pack P(j)
// and after the last block O += P V once more. A staged bias (common/bias_tile.cuh) is copied with K/V(j)
// into slot j mod (Stages - 1) and read by the score hook.
//
// Block-sparse (kSparse, issue 16, docs/sparse.md): the key blocks are the CTA's block lists
// (common/sparse.cuh SparseKeyBlocks: the full blocks, then the partial ones) instead of the band's range;
// unlisted blocks cost no copy and no product. The pipeline is the same with the walk's iteration i in place
// of the block index for the buffers and bias slots (i mod Stages, i mod (Stages - 1)); the steps of
// iterations i .. i + Stages - 2 are held in registers (ahead_nb, ahead_slot), the list entry of the next one
// is read while P V(i - 1) runs (one CTA per SM) or at the iteration's end (two). Full blocks are masked only
// at the keys' ragged end, partial ones by the rule: the band through the score hook's mask, bits or local +
// global as a verdict computed before S is live (sparse_rule_bits: the accumulator layout of each warp is the
// m16n8 C layout, as for the sm80 family), applied after the score hook.
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
#include "src/cuda/common/tile_io.cuh"
#include "src/cuda/common/warp_gemm.cuh"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/sm90/wgmma.cuh"

namespace flatattn::cuda::sm90 {

/// Compile-time shape of an sm90 Flash kernel: head dim D and a row T of the policy table
/// (policy/tile_size.h, flash_tile(Family::sm90, D)) or a tuner's candidate: BlockM = 64 * WGs query
/// rows, Warps = 4 * WGs.
template <int D, FlashTileSize T>
struct Shape {
  static constexpr bool kLazyRescale = T.lazy_rescale;
  static constexpr int kD = D, kBlockM = T.block_m, kBlockN = T.block_n, kWarps = T.warps, kMinBlocks = T.min_blocks;
  static constexpr int kStages = T.stages;
  static constexpr int kWGs = kWarps / 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kNT = kBlockN / 8;  ///< 8-key chunks of S per warp
  static constexpr int kDT = D / 8;        ///< 8-wide chunks of O per warp
  static_assert(kWarps % 4 == 0 && kBlockM == 16 * kWarps, "one warpgroup per 64 query rows");
  static_assert(D % 64 == 0 && kBlockN % 64 == 0, "128-byte swizzle: D and BlockN multiples of 64");
  static_assert(kStages >= 3, "K(j), V(j-1) and the copies in flight need three K/V buffers");
  using TQ = SmemTile<kBlockM, D>;
  using TKV = SmemTile<kBlockN, D>;
  /// Q | (K V) x Stages, plus 1024 bytes to align the base to the swizzle atom.
  static constexpr int kSmemBytes = TQ::kBytes + 2 * kStages * TKV::kBytes + 1024;
  /// The staged bias of variant V (common/bias_tile.cuh): Stages - 1 slots after the K/V ring (blocks j ..
  /// j + Stages - 2 are in flight or read while block j's logits are formed), filled with K/V(j).
  template <class V>
  using Bias = BiasTileFor<V, Family::sm90, kBlockM, kBlockN, kThreads, kStages - 1, kSmemBytes>;
};

/// The kernel's body. kSparse (issue 16): the key blocks are the CTA's block lists in *sp; false compiles
/// to the dense kernel (its loop, prologue and last product are kept verbatim in the else branches).
template <class E, class S, class V, bool kSparse>
FLATATTN_DEVICE void flash_fwd_body(const FwdParams& p, const SparseSpec* sp, int n_m_blocks, int hq) {
  using TQ = typename S::TQ;
  using TKV = typename S::TKV;
  constexpr int kD = S::kD, kBM = S::kBlockM, kBN = S::kBlockN, kThreads = S::kThreads;
  constexpr int kNT = S::kNT, kDT = S::kDT, kStages = S::kStages;
  extern __shared__ __align__(1024) unsigned char smem_raw[];

  const TileCoord tc(n_m_blocks, hq);
  const BlockInfo bi(p, tc.b, tc.h);
  // the hooks' coordinates (unused ones cost nothing; the lengths only for a score that reads them)
  const auto at = with_lengths<typename V::Score>(ScoreAt{tc.b, tc.h, tc.h / p.group, 0, 0}, bi.nq, bi.nk, p.var);
  const int m0 = tc.m_block * kBM;
  if (m0 >= bi.nq) return;  // varlen: this sequence is shorter than the longest
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
  const BandMask bm(p, bi.nq, bi.nk);
  const BlockRange<kBN> range(bm, m0, min(m0 + kBM, bi.nq) - 1);

  const std::uint32_t raw = smem_u32(smem_raw);
  const std::uint32_t sq = (raw + 1023u) & ~1023u;  // swizzle atoms start 1024-byte aligned
  unsigned char* smem = smem_raw + (sq - raw);
  const auto* gq = static_cast<const std::uint16_t*>(p.q) + bi.q + m0 * p.q_n;
  const auto* gk = static_cast<const std::uint16_t*>(p.k) + bi.k;
  const auto* gv = static_cast<const std::uint16_t*>(p.v) + bi.v;
  auto kbuf = [&](int j) { return sq + TQ::kBytes + (j % kStages) * 2 * TKV::kBytes; };
  // The bias tile of key block j travels with K/V(j) (nothing when the instance does not stage one).
  const typename S::template Bias<V> bias(p.var, tc.b, tc.h, sq + TQ::kBytes + 2 * kStages * TKV::kBytes);
  auto load_kv = [&](int j) {
    const int n0 = j * kBN;
    bias.load(j, m0, n0, tid);
    load_tile_stepped<TKV, kD, kThreads>(kbuf(j), gk + n0 * p.k_n, p.k_n, bi.nk - n0, p.d, p.k, tid);
    load_tile_stepped<TKV, kD, kThreads>(kbuf(j) + TKV::kBytes, gv + n0 * p.v_n, p.v_n, bi.nk - n0, p.d, p.v, tid);
  };

  load_tile<TQ, kD, kThreads>(sq, gq, p.q_n, bi.nq - m0, p.d, p.q, tid);
  copy_commit();
  if constexpr (!kSparse) {
#pragma unroll
  for (int s = 0; s < kStages - 2; ++s) {
    if (range.begin + s < range.end) load_kv(range.begin + s);
    copy_commit();  // one group per stage, empty or not, so the wait count below is uniform
  }
  }

  const int warp_row0 = warp * 16;               // this warp's 16 rows of the CTA's tile
  const std::uint32_t sq_wg = sq + wg * 64 * TQ::kRowBytes;  // the warpgroup's 64 rows (8 atoms)
  const int row = m0 + warp_row0 + (lane >> 2);  // this thread's first row (the other is row + 8)
  const int col = 2 * (lane & 3);                // its first column within a key block

  float o[1][kDT][4];
  float m[1][2] = {{-INFINITY, -INFINITY}}, l[1][2] = {{0.f, 0.f}};
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[0][dt][e] = 0.f;
  float s[1][kNT][4];
  std::uint32_t pa[1][kNT / 2][4];  // P of the previous block, the A operand of its P V

  if constexpr (kSparse) {
    constexpr int kAhead = kStages - 2;  // the copies of iteration i + kAhead fly during iteration i
    const int sparse_r = m0 / sp->block_q;  // the CTA's rows lie in one query block of the lists
    const SparseKeyBlocks<kBN> list(sp, tc.b, tc.h, sparse_r, bi.nk);
    const int seq_blocks = (bi.nk + sp->block_kv - 1) / sp->block_kv;  // list blocks holding a key of the sequence
    // K/V (and the bias tile) of kernel key block nb into the buffers of iteration i.
    auto load_step = [&](int i, int nb) {
      const int n0 = nb * kBN;
      bias.load(i, m0, n0, tid);
      load_tile_stepped<TKV, kD, kThreads>(kbuf(i), gk + n0 * p.k_n, p.k_n, bi.nk - n0, p.d, p.k, tid);
      load_tile_stepped<TKV, kD, kThreads>(kbuf(i) + TKV::kBytes, gv + n0 * p.v_n, p.v_n, bi.nk - n0, p.d, p.v, tid);
    };
    typename SparseKeyBlocks<kBN>::Cursor walk;  // the list position after the last step taken
    // The steps of iterations i .. i + kAhead: kernel key block (-1: past the list) and partial slot (-1: a
    // full block); two registers a step (a whole SparseStep spilled D = 64's 128 registers).
    int ahead_nb[kAhead + 1], ahead_slot[kAhead + 1];
    auto take = [&](int& nb, int& slot) {
      const SparseStep st = list.take(walk, seq_blocks);
      nb = st.nb;
      slot = st.partial ? st.slot : -1;
    };
    // One CTA per SM (D = 128): the next list entry is read while P V(i - 1) runs, off the critical path; with
    // two (D = 64, 128 registers) at the end of the iteration, where fewer registers are live (the other CTA
    // hides its latency).
    constexpr bool kEarlyTake = S::kMinBlocks == 1;
#pragma unroll
    for (int k = 0; k <= kAhead; ++k) take(ahead_nb[k], ahead_slot[k]);
#pragma unroll
    for (int k = 0; k < kAhead; ++k) {
      if (ahead_nb[k] >= 0) load_step(k, ahead_nb[k]);
      copy_commit();  // one group per stage, empty or not, as in the dense prologue
    }
    int i = 0;
    for (; ahead_nb[0] >= 0; ++i) {
      const int nb = ahead_nb[0];
      const bool partial = ahead_slot[0] >= 0;
      copy_wait<kStages - 3>();  // Q and K/V(i) have landed (this thread's copies)
      fence_proxy_async();
      __syncthreads();           // every thread's copies of K/V(i); P V(i - 2) is done in every warp
      if (ahead_nb[kAhead] >= 0) load_step(i + kAhead, ahead_nb[kAhead]);  // into iteration i - 2's buffers
      copy_commit();

      // Partial blocks with bits or local + global: the rule's verdict first, while S is not live (next to
      // the live S tile the rule's loads and searches spilled D = 64's 128 registers).
      const bool rule = partial && sp->rule != SparseRule::band;
      std::uint64_t visible = ~std::uint64_t{0};
      if (rule) {
        SparseStep st;
        st.nb = nb, st.partial = true, st.slot = ahead_slot[0], st.c = nb / list.per;  // (rare: a division)
        visible = sparse_rule_bits<1, kNT>(*sp, p, st, tc.b, tc.h, sparse_r, bi.nq, bi.nk, row, nb * kBN + col);
      }

      fence_regs(o[0]);
      wgmma_fence();
      gemm_qk_issue<E, TQ, TKV, kBN, kD>(s[0], sq_wg, kbuf(i));
      if (i > 0) {
        gemm_pv_issue<E, TKV, kBN, kD>(o[0], pa[0], kbuf(i - 1) + TKV::kBytes);
        wgmma_wait<1>();
      } else {
        wgmma_wait<0>();
      }
      fence_regs(s[0]);
      const bool band = partial && sp->rule == SparseRule::band;  // the band is the partial blocks' rule
      const bool ragged = (nb + 1) * kBN > bi.nk;
      // Full blocks (and partial ones of another rule) see every key inside the sequence: only the ragged end
      // is masked, by a band-free BandMask (built in place: selecting one of two masks went through the stack).
      BandMask mk = bm;
      if (!band) mk.left = -1, mk.right = -1;
      bias.template score<V, Layout::query_major>(s, p, ragged || band, mk, row, nb * kBN + col, at, i, m0, nb * kBN);
      if (rule) apply_visible(s, visible);
      float alpha[1][2];
      const bool moved = online_softmax_rows<S::kLazyRescale>(s, m, l, alpha, p.mul);
      fence_regs(s[0]);
      fence_vals(alpha[0][0], alpha[0][1], l[0][0], l[0][1]);
      int fresh_nb = -1, fresh_slot = -1;  // the step of iteration i + kAhead + 1 (copies issued next iteration)
      if constexpr (kEarlyTake) take(fresh_nb, fresh_slot);
      if (__any_sync(0xffffffffu, moved)) {
        wgmma_wait<0>();  // P V(i - 1) is done: O and pa are free
        fence_regs(o[0]);
        rescale_o<false>(o, alpha, moved);
      } else {
        wgmma_wait<0>();
        fence_regs(o[0]);
      }
      fence_regs(pa[0]);
      pack_probs<E, V>(s, pa, p, row, nb * kBN + col, at);
#pragma unroll
      for (int k = 0; k < kAhead; ++k) ahead_nb[k] = ahead_nb[k + 1], ahead_slot[k] = ahead_slot[k + 1];
      if constexpr (kEarlyTake) {
        ahead_nb[kAhead] = fresh_nb, ahead_slot[kAhead] = fresh_slot;
      } else {
        take(ahead_nb[kAhead], ahead_slot[kAhead]);
      }
    }
    if (i > 0) {
      fence_regs(o[0]);
      wgmma_fence();
      gemm_pv_issue<E, TKV, kBN, kD>(o[0], pa[0], kbuf(i - 1) + TKV::kBytes);
      wgmma_wait<0>();
      fence_regs(o[0]);
    }
  } else {

  for (int nb = range.begin; nb < range.end; ++nb) {
    copy_wait<kStages - 3>();  // Q and K/V(nb) have landed (this thread's copies)
    fence_proxy_async();       // ... and are visible to wgmma's operand reads once published
    __syncthreads();           // every thread's copies of K/V(nb); P V(nb - 2) is done in every warp
    if (nb + kStages - 2 < range.end) load_kv(nb + kStages - 2);  // into block nb - 2's buffers
    copy_commit();

    fence_regs(o[0]);
    wgmma_fence();
    gemm_qk_issue<E, TQ, TKV, kBN, kD>(s[0], sq_wg, kbuf(nb));
    if (nb > range.begin) {
      gemm_pv_issue<E, TKV, kBN, kD>(o[0], pa[0], kbuf(nb - 1) + TKV::kBytes);
      wgmma_wait<1>();  // S(nb) is done; P V(nb - 1) may still run
    } else {
      wgmma_wait<0>();
    }
    fence_regs(s[0]);
    bias.template score<V, Layout::query_major>(s, p, range.needs_mask(nb), bm, row, nb * kBN + col, at, nb, m0,
                                                nb * kBN);
    float alpha[1][2];
    const bool moved = online_softmax_rows<S::kLazyRescale>(s, m, l, alpha, p.mul);
    // Keep the softmax before the wait below (nothing it computes feeds the wait).
    fence_regs(s[0]);
    fence_vals(alpha[0][0], alpha[0][1], l[0][0], l[0][1]);
    // The wait sits at the start of its own basic block: ptxas hoists a wait_group to the start of its
    // block (it has no register operands), which would stall the softmax above on P V(nb - 1). The
    // branch is the lazy rescale's skip (and, eager, skips only a multiplication by 1).
    if (__any_sync(0xffffffffu, moved)) {
      wgmma_wait<0>();  // P V(nb - 1) is done: O and pa are free
      fence_regs(o[0]);
      rescale_o<false>(o, alpha, moved);
    } else {
      wgmma_wait<0>();
      fence_regs(o[0]);
    }
    fence_regs(pa[0]);  // pa stays live until here: its registers are not reused while the wgmma reads them
    pack_probs<E, V>(s, pa, p, row, nb * kBN + col, at);
  }
  if (range.begin < range.end) {
    fence_regs(o[0]);
    wgmma_fence();
    gemm_pv_issue<E, TKV, kBN, kD>(o[0], pa[0], kbuf(range.end - 1) + TKV::kBytes);
    wgmma_wait<0>();
    fence_regs(o[0]);
  }
  }  // kSparse

  copy_wait<0>();
  __syncthreads();  // the Q copy has landed even when no key block was visited; no wgmma reads Q now

  float inv[1][2], lse[1][2];
  finalize_rows(m, l, inv, lse, p.mul);
  add_sinks(inv, lse, p.sinks, tc.h);
  scale_output_for_dropout<V>(inv, p);
  store_lse(lse, p, bi, row, lane);
  auto* go = static_cast<std::uint16_t*>(p.o) + bi.o + m0 * p.o_n;
  store_out<E, TQ, 1, kDT>(o, inv, smem, warp_row0, lane, go, p.o_n, bi.nq - m0, p.d);
}

template <class E, class S, class V>
__global__ void __launch_bounds__(S::kThreads, S::kMinBlocks)
    flash_fwd_kernel(const __grid_constant__ FwdParams p, int n_m_blocks, int hq) {
  flash_fwd_body<E, S, V, false>(p, nullptr, n_m_blocks, hq);
}

/// The block-sparse forward (issue 16): the same body over the CTA's block lists (a separate function, so
/// the dense kernel keeps its 288-byte parameters and its code).
template <class E, class S, class V>
__global__ void __launch_bounds__(S::kThreads, S::kMinBlocks)
    flash_fwd_sparse_kernel(const __grid_constant__ FwdParams p, const __grid_constant__ SparseSpec sp, int n_m_blocks,
                            int hq) {
  flash_fwd_body<E, S, V, true>(p, &sp, n_m_blocks, hq);
}

}  // namespace flatattn::cuda::sm90
