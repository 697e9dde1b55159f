// The consumer warpgroups' main loop of the warp-specialized forward (ws_fwd_kernel.cuh): one warpgroup, 64
// query rows, every key block of the CTA's range from the K/V ring (pipeline.cuh). Per block j:
//   S(j) = Q K(j)^T   wgmma m64n{BlockN}k16, A and B from shared memory (wgmma.cuh)
//   softmax           the variant's score hook and the band mask (common/score.cuh), the online softmax
//                     (common/softmax.cuh), the probability hook, P packed to the register A fragment
//   O += P(j) V(j)    wgmma m64n{D}k16, A = P from registers, B = V (MN-major) from shared memory
// kOverlap (FlashAttention-3, Shah et al. 2024, Sec. 3.2, intra-warpgroup overlap): S(j) is issued together
// with P(j-1) V(j-1), so the tensor cores do the P V while this warpgroup runs the softmax of block j:
//   wait K(j) [and V(j-1)] | issue S(j) [and P(j-1) V(j-1)] | wait S(j), release K(j) | softmax(j) |
//   wait P V(j-1), release V(j-1), rescale O | pack P(j)          ... and after the last block one more P V.
// Schedules (kSched, FLATATTN_CUDA_SM90_WS's value): 1 the overlap above; 2 the overlap and ping-pong between the
// two consumer warpgroups (FA3 Sec. 3.1, "pingpong scheduling"): each issues its products only in its turn
// (named barrier 1 + c, warp_roles.cuh) and hands the turn to the other right after, so the tensor cores take
// one warpgroup's products while the other runs its softmax; 3 no overlap, every product waited right away
// (the simplest order: the fallback when the others are suspect).
// Ping-pong bookkeeping: turns of a warpgroup = its issue points (blocks + the final P V); consumer 1 hands
// consumer 0 one turn before its loop (consumer 0 starts) and consumer 0 takes one more after its loop, so
// each barrier sees as many arrivals as waits. The persistent kernel (ws_fwd_persistent.cuh) runs this per tile:
// the bookkeeping closes within each tile, and the next tile's first hand-over comes after its Q barrier.
// Block-sparse (kSparse, issue 16, docs/sparse.md): the blocks are the CTA's block lists (common/sparse.cuh
// SparseKeyBlocks::take: the full blocks, then the partial ones, in the order the producer loads them) instead of
// the band's range; `it` counts the visited blocks (the ring's slot and phase). Both warpgroups walk the same list
// (one query block of the lists per CTA), so their turns match; with no block they take none in the loop and the
// hand-overs around it still pair up. The next list entry is read while this iteration's products run. Full
// blocks are masked only at the keys' ragged end; partial ones by their rule: the band through the score hook's
// mask, bits or local + global as a verdict computed before S is live (sparse_rule_bits), applied after the score
// hook -- as in sm90/flash_kernel.cuh's sparse walk.
#pragma once

#include <cstdint>

#include "src/cuda/common/mask.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/score.cuh"
#include "src/cuda/common/softmax.cuh"
#include "src/cuda/common/sparse.cuh"
#include "src/cuda/common/warp_gemm.cuh"
#include "src/cuda/sm90/warp_roles.cuh"
#include "src/cuda/sm90/wgmma.cuh"

namespace flatattn::cuda::sm90 {

/// The warpgroup's running state: O accumulators, row max and (thread-partial) row sums.
template <int kDT>
struct WsAcc {
  float o[1][kDT][4];
  float m[1][2] = {{-INFINITY, -INFINITY}};
  float l[1][2] = {{0.f, 0.f}};
};

/// Where a sparse CTA's blocks come from (kSparse): its lists, the sequence's list blocks (SparseKeyBlocks::take's
/// seq_blocks), and the spec, sequence, query head and list row the partial blocks' rule reads.
template <int BlockN>
struct WsSparseWalk {
  SparseKeyBlocks<BlockN> list;
  int seq_blocks;
  int b, h, r, nq;
};

/// Runs the key blocks [range.begin, range.end) (kSparse: the blocks of walk's lists) for the warpgroup whose Q rows
/// start at shared address sq_wg. row: this thread's first query row (sequence coordinates), col: its first column
/// within a key block. c: the consumer's index (0, 1), for the ping-pong turns. it0: the ring iteration of the walk's
/// first block (the persistent kernel, ws_fwd_persistent.cuh, continues the ring's count across its tiles; else 0).
/// Returns the ring iterations the walk took (its key blocks).
template <class E, class S, class V, class Ring, int kSched, bool kSparse = false>
FLATATTN_DEVICE int ws_consumer_mainloop(WsAcc<S::kDT>& acc, const FwdParams& p, const Ring& ring, std::uint32_t sq_wg,
                                          const BandMask& bm, const BlockRange<S::kBlockN>& range, int row, int col,
                                          ScoreAtOf<typename V::Score> at, int c,
                                          const WsSparseWalk<S::kBlockN>* walk = nullptr, int it0 = 0) {
  static_assert(kSched >= 1 && kSched <= 3, "schedules 1 (overlap), 2 (overlap + ping-pong), 3 (none)");
  constexpr bool kOverlap = kSched != 3, kPingPong = kSched == 2;
  static_assert(!kPingPong || S::kConsumerWGs == 2, "ping-pong takes two consumer warpgroups");
  constexpr int kTurnThreads = 2 * 128;
  auto take_turn = [&] {
    if constexpr (kPingPong) named_sync(1 + c, kTurnThreads);
  };
  auto pass_turn = [&] {
    if constexpr (kPingPong) named_arrive(2 - c, kTurnThreads);
  };
  if constexpr (kPingPong) {
    if (c == 1) named_arrive(1, kTurnThreads);  // consumer 0 goes first
  }
  using TQ = typename S::TQ;
  using TKV = typename S::TKV;
  constexpr int kD = S::kD, kBN = S::kBlockN, kNT = S::kNT, kDT = S::kDT;
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc.o[0][dt][e] = 0.f;
  float s[1][kNT][4];
  std::uint32_t pa[1][kNT / 2][4];  // P of the block whose P V is next

  // Iteration `it` of the walk on kernel key block nb: the score hook's band mask mk where needs_mask() (asked
  // where the mask is applied: the dense schedules' code stays that of before the sparse walk), the rule's verdict
  // `visible` where rule (kSparse), in_flight() while the products run.
  auto block = [&](int it, int nb, auto&& needs_mask, const BandMask& mk, bool rule, std::uint64_t visible,
                   auto&& in_flight) {
    ring.wait_k(it);
    if constexpr (kOverlap) {
      if (it > it0) ring.wait_v(it - 1);  // before the issues: no spin loop between two wgmma groups
      take_turn();
      fence_regs(acc.o[0]);
      wgmma_fence();
      gemm_qk_issue<E, TQ, TKV, kBN, kD>(s[0], sq_wg, ring.k(Ring::slot(it)));
      if (it > it0) {
        gemm_pv_issue<E, TKV, kBN, kD>(acc.o[0], pa[0], ring.v(Ring::slot(it - 1)));
        pass_turn();
        in_flight();
        wgmma_wait<1>();  // S(nb) is done; P V(nb - 1) may still run
      } else {
        pass_turn();
        in_flight();
        wgmma_wait<0>();
      }
    } else {
      wgmma_fence();
      gemm_qk_issue<E, TQ, TKV, kBN, kD>(s[0], sq_wg, ring.k(Ring::slot(it)));
      in_flight();
      wgmma_wait<0>();
    }
    fence_regs(s[0]);
    ring.release_k(it);  // this thread's S(nb) has retired: K(nb) is no longer read
    apply_score<V, Layout::query_major>(s, p, needs_mask(), mk, row, nb * kBN + col, at);
    if constexpr (kSparse) {
      if (rule) apply_visible(s, visible);
    }
    float alpha[1][2];
    const bool moved = online_softmax_rows<S::kLazyRescale>(s, acc.m, acc.l, alpha, p.mul);
    fence_regs(s[0]);
    fence_vals(alpha[0][0], alpha[0][1], acc.l[0][0], acc.l[0][1]);
    if constexpr (kOverlap) {
      // The wait starts its own basic block (ptxas hoists a wait_group to the start of its block, which would
      // stall the softmax above on P V(nb - 1)); see sm90/flash_kernel.cuh.
      if (__any_sync(0xffffffffu, moved)) {
        wgmma_wait<0>();
        fence_regs(acc.o[0]);
        rescale_o<false>(acc.o, alpha, moved);
      } else {
        wgmma_wait<0>();
        fence_regs(acc.o[0]);
      }
      fence_regs(pa[0]);  // pa stays live until its P V has retired
      if (it > it0) ring.release_v(it - 1);
    } else {
      rescale_o<S::kLazyRescale>(acc.o, alpha, moved);
    }
    pack_probs<E, V>(s, pa, p, row, nb * kBN + col, at);
    if constexpr (!kOverlap) {
      ring.wait_v(it);
      fence_regs(acc.o[0]);
      fence_regs(pa[0]);
      wgmma_fence();
      gemm_pv_issue<E, TKV, kBN, kD>(acc.o[0], pa[0], ring.v(Ring::slot(it)));
      wgmma_wait<0>();
      fence_regs(acc.o[0]);
      fence_regs(pa[0]);
      ring.release_v(it);
    }
  };
  // The last block's P V (the overlapped schedules issue it one iteration late).
  auto last_pv = [&](int last) {
    ring.wait_v(last);
    take_turn();
    fence_regs(acc.o[0]);
    fence_regs(pa[0]);
    wgmma_fence();
    gemm_pv_issue<E, TKV, kBN, kD>(acc.o[0], pa[0], ring.v(Ring::slot(last)));
    pass_turn();
    wgmma_wait<0>();
    fence_regs(acc.o[0]);
    fence_regs(pa[0]);
    ring.release_v(last);
  };
  int taken = 0;
  if constexpr (kSparse) {
    const SparseSpec& sp = *walk->list.s;
    typename SparseKeyBlocks<kBN>::Cursor w;
    SparseStep cur = walk->list.take(w, walk->seq_blocks);
    int it = it0;
    for (; cur.nb >= 0; ++it) {
      // The rule's verdict first, while S is not live (sm90/flash_kernel.cuh: next to the live S tile the rule's
      // loads and searches spill).
      const bool rule = cur.partial && sp.rule != SparseRule::band;
      std::uint64_t visible = ~std::uint64_t{0};
      if (rule)
        visible = sparse_rule_bits<1, kNT>(sp, p, cur, walk->b, walk->h, walk->r, walk->nq, bm.nk, row, cur.nb * kBN + col);
      // Full blocks (and partial ones of another rule) see every key inside the sequence: only the ragged end is
      // masked, by a band-free mask; partial blocks of the band rule by the call's band.
      const bool band = cur.partial && sp.rule == SparseRule::band;
      const bool ragged = (cur.nb + 1) * kBN > bm.nk;
      BandMask mk = bm;
      if (!band) mk.left = -1, mk.right = -1;
      SparseStep next;
      block(it, cur.nb, [&] { return ragged || band; }, mk, rule, visible,
            [&] { next = walk->list.take(w, walk->seq_blocks); });
      cur = next;
    }
    if constexpr (kOverlap) {
      if (it > it0) last_pv(it - 1);
    }
    taken = it - it0;
  } else {
    for (int nb = range.begin; nb < range.end; ++nb)
      block(it0 + nb - range.begin, nb, [&] { return range.needs_mask(nb); }, bm, false, 0, [] {});
    if constexpr (kOverlap) {
      if (range.begin < range.end) last_pv(it0 + range.end - 1 - range.begin);
    }
    taken = range.end - range.begin;
  }
  if constexpr (kPingPong) {
    if (c == 0) named_sync(1, kTurnThreads);  // consumer 1's last hand-over
  }
  return taken;
}

}  // namespace flatattn::cuda::sm90
