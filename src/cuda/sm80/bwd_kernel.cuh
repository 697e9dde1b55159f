// Flash-dataflow backward main kernel (FlashAttention-2, Dao 2023, Alg. 2 and Sec. 3.2): one CTA per
// (key block of BlockN keys, kv head, sequence). K and V of the block stay in shared memory, dK and dV
// accumulate in registers over every query block that sees the keys and over the query heads of the
// kv head's group (GQA/MQA: summed on chip, no reduction pass). Per query block of BlockM rows:
//   S = Q K^T, P = exp(S - LSE) (recomputed; masked and out-of-range entries 0), dP = dO V^T,
//   dS = P o (dP - D_i) (o the score's derivative, common/score.cuh; D_i from the pre-pass), then
//   dV += P^T dO,  dQ_i += dS K (fp32 reductions into the workspace),  dK += dS^T Q.
// P and dS go through shared memory because the dV/dK products read them transposed. dK is scaled by
// the softmax scale once at the end (dQ in the conversion pass). Only query blocks that can see a key
// of the block are visited, and only the blocks crossing the band's edges are masked per element.
// Block-sparse (kSparse, issue 16): the visited query blocks are the ones the key block's transposed lists
// name (common/sparse_bwd.cuh), per query head of the group; the rest of the pipeline is the same.
//
// Deterministic mode: each dQ contribution is rounded to a per-row unit and summed as an integer, two
// columns per 64-bit reduction, so the sum is the same in any order (common/repro_dq.cuh). It replaced
// an ordered scheme (a semaphore per query block, FlashAttention-3's: +21-33% over the default mode on
// the H100), a 64-bit integer per element (+100%: twice the reductions) and fp32 (hi, lo) parts
// pre-rounded to two grids (+15-17%: twice the L2 sectors); bench/results/gpu-bwd-h100.md.
//
// Pipeline per query block, Stages = 2 (Q and dO double-buffered):
//   wait Q, dO | barrier | issue the next block's Q, dO | S, P -> smem | dP, dS -> smem | barrier |
//   dV += P^T dO | dQ = dS K, add dQ | dK += dS^T Q
// Stages = 1: the next block's loads are issued after a barrier at the end of the step.
#pragma once

#include <cstdint>

#include "src/cuda/common/bias_tile.cuh"
#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/bwd_cta.cuh"
#include "src/cuda/common/bwd_params.h"
#include "src/cuda/common/bwd_steps.cuh"
#include "src/cuda/common/copy.cuh"
#include "src/cuda/common/dbias.cuh"
#include "src/cuda/common/mask.cuh"
#include "src/cuda/common/repro_dq.cuh"
#include "src/cuda/common/score.cuh"
#include "src/cuda/common/red_add.cuh"
#include "src/cuda/common/smem_tile.cuh"
#include "src/cuda/common/softmax.cuh"
#include "src/cuda/common/sparse_bwd.cuh"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/sm80/bwd_gemm.cuh"
#include "src/cuda/common/bwd_rows.cuh"
#include "src/cuda/common/tile_io.cuh"
#include "src/cuda/common/warp_gemm.cuh"

namespace flatattn::cuda {

/// Compile-time shape of the backward kernel: head dim D and a row T of the policy table
/// (policy/tile_size.h, bwd_tile) or a tuner's candidate.
template <int D, BwdTileSize T>
struct BwdShape {
  static constexpr int kD = D, kBlockM = T.block_m, kBlockN = T.block_n, kWarps = T.warps, kStages = T.stages;
  static constexpr int kThreads = 32 * kWarps, kMinBlocks = T.min_blocks;
  // S, dP (BlockM x BlockN): warp (w % sdp_wm, w / sdp_wm) owns 16 kSMT rows x 8 kSNT keys.
  static constexpr int kSWM = T.sdp_wm, kSWarps = T.sdp_wm * T.sdp_wn;
  static constexpr int kSMT = kBlockM / (16 * T.sdp_wm), kSNT = kBlockN / (8 * T.sdp_wn);
  // dK, dV (BlockN x D): warp (w % dkv_wn, w / dkv_wn) owns 16 kKMT keys x 8 kKDT columns.
  static constexpr int kKWN = T.dkv_wn, kKWarps = T.dkv_wn * T.dkv_wd;
  static constexpr int kKMT = kBlockN / (16 * T.dkv_wn), kKDT = D / (8 * T.dkv_wd);
  // dQ (BlockM x D): warp (w % dq_wm, w / dq_wm) owns 16 kQMT rows x 8 kQDT columns.
  static constexpr int kQWM = T.dq_wm, kQWarps = T.dq_wm * T.dq_wd;
  static constexpr int kQMT = kBlockM / (16 * T.dq_wm), kQDT = D / (8 * T.dq_wd);
  using TQ = SmemTile<kBlockM, D>;         // Q and dO
  using TKV = SmemTile<kBlockN, D>;        // K and V (dK and dV staged here at the end)
  using TP = SmemTile<kBlockM, kBlockN>;  // P and dS, [query][key]
  /// LSE, D_i and (deterministic) the dQ rows' units u_i of one query block (fp32)
  static constexpr int kRowBytes = 3 * kBlockM * 4;
  static constexpr int kSmemBytes = 2 * kStages * TQ::kBytes + 2 * TKV::kBytes + 2 * TP::kBytes + kStages * kRowBytes;
  /// The staged bias of variant V on family F (common/bias_tile.cuh): a slot per Q/dO stage after the rows,
  /// filled with Q(s); off (the global reads of bias_at) when its f32 worst case does not fit.
  template <Family F, class V>
  using Bias = BiasTileFor<V, F, kBlockM, kBlockN, kThreads, kStages, kSmemBytes>;

  static_assert(kStages == 1 || kStages == 2, "one or two Q/dO stages");
  static_assert(kSWarps <= kWarps && kKWarps <= kWarps && kQWarps <= kWarps, "a product uses at most every warp");
  static_assert(kSMT * 16 * T.sdp_wm == kBlockM && kSNT * 8 * T.sdp_wn == kBlockN && kSNT % 2 == 0,
                "S/dP warps tile BlockM x BlockN");
  static_assert(kKMT * 16 * T.dkv_wn == kBlockN && kKDT * 8 * T.dkv_wd == D && kKDT % 2 == 0, "dK/dV warps tile BlockN x D");
  static_assert(kQMT * 16 * T.dq_wm == kBlockM && kQDT * 8 * T.dq_wd == D && kQDT % 2 == 0, "dQ warps tile BlockM x D");
  static_assert(col_split_ok<TP>(16 * kKMT), "dK/dV warps: key split of the P/dS tiles (read transposed)");
  static_assert(col_split_ok<TQ>(8 * kKDT), "dK/dV warps: head-dim split of the Q/dO tiles");
  static_assert(col_split_ok<TKV>(8 * kQDT), "dQ warps: head-dim split of the K tile");
  static_assert(col_split_ok<TP>(8 * kSNT), "S/dP warps: key split of the P/dS tiles (stores)");
};

/// kSparse (issue 16, docs/sparse.md): the query blocks are the listed ones of the CTA's key block (the
/// transposed lists of `sparse_arg`, a SparseSpec; common/sparse_bwd.cuh) instead of the band's contiguous
/// range. false compiles to the dense kernel: its argument is empty (NoSparseArg) and every sparse branch is
/// `if constexpr` or a constant condition. (A __device__ body taking `const BwdParams&` from two kernels moved
/// the dense SASS by 8 instructions; a second, empty kernel argument leaves it instruction-for-instruction equal.)
template <Family F, class E, class Shape, class V, bool kSparse = false>
__global__ void __launch_bounds__(Shape::kThreads, Shape::kMinBlocks)
    flash_bwd_kernel(const __grid_constant__ BwdParams p, const __grid_constant__ BwdSparseArg<kSparse> sparse_arg) {
  const SparseSpec* const spec = sparse_spec_of(sparse_arg);
  using TQ = typename Shape::TQ;
  using TKV = typename Shape::TKV;
  using TP = typename Shape::TP;
  constexpr int kD = Shape::kD, kBM = Shape::kBlockM, kBN = Shape::kBlockN, kThreads = Shape::kThreads;
  constexpr int kStages = Shape::kStages;
  constexpr int kSMT = Shape::kSMT, kSNT = Shape::kSNT, kKMT = Shape::kKMT, kKDT = Shape::kKDT;
  constexpr int kQMT = Shape::kQMT, kQDT = Shape::kQDT;
  static_assert(kBackwardServes<V>, "this variant's probability hook has no backward rule yet");
  extern __shared__ __align__(128) unsigned char smem[];

  const BwdTile tile(p);
  const int group = p.f.group;
  const BlockInfo kv(p.f, tile.b, tile.hk * group);  // lengths; k/v offsets of the kv head
  const int n0 = tile.n_block * kBN;
  if (n0 >= kv.nk) return;  // varlen: this sequence has fewer keys than the longest
  const int nq = kv.nq, nk = kv.nk;
  const int nq_rows = min(nq, p.f.nq);  // rows past max_seqlen_q have no workspace
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const BandMask bm(p.f, nq, nk);

  // Query blocks that see a key of this block, and those that need the per-element mask.
  const BwdQueryBlocks<kBM, kBN> qb(bm, nq, kSparse ? 0 : nq_rows, tile.n_block);
  const int first = qb.first, last = qb.last;
  const int len = qb.count();
  const int steps = len * group;
  // Block-sparse: the listed query blocks of the key block per head of the group; cur is step s's position,
  // st its block (cur.hh == group: no step). Full blocks are masked only at the keys' ragged end (a band-free
  // BandMask), partial ones by the rule: the band itself, or the bits / local + global on top of the end.
  // (NoSparseArg in the dense kernel: a SparseQueryBlocks there, even unused, moved its SASS by 8 instructions.)
  using Walk = std::conditional_t<kSparse, SparseQueryBlocks<kBM, kBN>, NoSparseArg>;
  const Walk ql = make_sparse_walk<Walk>(spec, tile.b, tile.hk * group, group, tile.n_block, nq_rows);
  SparseBwdCursor cur;
  SparseBwdStep st;
  if constexpr (kSparse) cur = ql.next(cur, st);
  BandMask ends = bm;
  ends.left = -1, ends.right = -1;

  // Shared memory: Q (stages) | dO (stages) | K | V | P | dS | LSE, D_i (stages).
  const std::uint32_t s_base = smem_u32(smem);
  auto sq = [&](int s) { return s_base + (kStages == 2 ? (s & 1) * TQ::kBytes : 0); };
  auto sdo = [&](int s) { return s_base + kStages * TQ::kBytes + (kStages == 2 ? (s & 1) * TQ::kBytes : 0); };
  const std::uint32_t sk = s_base + 2 * kStages * TQ::kBytes, sv = sk + TKV::kBytes;
  const std::uint32_t sp = sv + TKV::kBytes, sds = sp + TP::kBytes;
  unsigned char* const p_tile = smem + (sp - s_base);
  unsigned char* const ds_tile = smem + (sds - s_base);
  auto s_rows = [&](int s) {  // fp32 [LSE x BlockM | D_i x BlockM | u_i x BlockM] of step s
    return reinterpret_cast<const float*>(ds_tile + TP::kBytes + (kStages == 2 ? (s & 1) * Shape::kRowBytes : 0));
  };

  // Step s visits query head h0 + hh, query block i (hh = s / len, i = first + s % len), kept as two
  // counters advanced per step. Every per-head offset is the first head's plus hh times a head stride
  // (Q, dO, LSE strides; workspace rows: batch * f.nq), so no step recomputes a sequence's offsets
  // (varlen: cu_seqlens loads) or divides: the bookkeeping once cost ~40% more instructions than FA2's
  // loop (bench/results/gpu-bwd-profile-h100.md).
  const BwdHeadBases hb(p, tile);
  // The bias tile of step s travels with Q(s) (nothing when the instance does not stage one).
  const typename Shape::template Bias<F, V> bias(p.f.var, tile.b, tile.hk * group, s_base + Shape::kSmemBytes);

  // Step s's loads: Q, dO, LSE and D_i of query head h0 + hh, query block i (and its bias tile).
  auto load_step = [&](int s, int hh, int i) {
    const int m0 = i * kBM;
    if constexpr (has_bias<typename V::Score>) bias.load(s, m0, n0, tid, hh);
    const auto* gq = hb.q + hh * p.f.q_h + m0 * p.f.q_n;
    load_tile_stepped<TQ, kD, kThreads>(sq(s), gq, p.f.q_n, nq_rows - m0, p.f.d, p.f.q, tid);
    const auto* gdo = hb.dout + hh * p.do_h + m0 * p.do_n;
    load_tile_stepped<TQ, kD, kThreads>(sdo(s), gdo, p.do_n, nq_rows - m0, p.f.d, p.dout, tid);
    hb.load_rows<kBM, kThreads>(p, smem_u32(s_rows(s)), hh, m0, nq_rows, tid);
  };
  {
    const auto* gk = static_cast<const std::uint16_t*>(p.f.k) + kv.k + n0 * p.f.k_n;
    const auto* gv = static_cast<const std::uint16_t*>(p.f.v) + kv.v + n0 * p.f.v_n;
    load_tile<TKV, kD, kThreads>(sk, gk, p.f.k_n, nk - n0, p.f.d, p.f.k, tid);
    load_tile<TKV, kD, kThreads>(sv, gv, p.f.v_n, nk - n0, p.f.d, p.f.v, tid);
    if (kSparse ? cur.hh < group : steps > 0) load_step(0, kSparse ? cur.hh : 0, kSparse ? st.i : first);
    copy_commit();
  }

  // Lane bases of the three products (see sm80/bwd_gemm.cuh).
  const int s_row0 = (warp % Shape::kSWM) * kSMT * 16, s_col0 = (warp / Shape::kSWM) * kSNT * 8;
  const std::uint32_t a_q = TQ::offset(s_row0 + a_row(lane), a_col(lane));     // Q, dO rows
  const std::uint32_t b_k = TKV::offset(s_col0 + b_row(lane), b_col(lane));    // K, V rows
  const int k_row0 = (warp % Shape::kKWN) * kKMT * 16, k_col0 = (warp / Shape::kKWN) * kKDT * 8;
  const std::uint32_t a_pt = TP::offset(b_row(lane), k_row0 + b_col(lane));    // P^T, dS^T
  const std::uint32_t b_qt = TQ::offset(a_row(lane), k_col0 + a_col(lane));    // dO, Q (k = query)
  const int q_row0 = (warp % Shape::kQWM) * kQMT * 16, q_col0 = (warp / Shape::kQWM) * kQDT * 8;
  const std::uint32_t a_ds = TP::offset(q_row0 + a_row(lane), a_col(lane));    // dS
  const std::uint32_t b_kt = TKV::offset(a_row(lane), q_col0 + a_col(lane));   // K (k = key)
  const FragStore<TP> st_p(s_row0, s_col0, lane);                              // P, dS

  float dk[kKMT][kKDT][4], dv[kKMT][kKDT][4];
#pragma unroll
  for (int mt = 0; mt < kKMT; ++mt)
#pragma unroll
    for (int dt = 0; dt < kKDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dk[mt][dt][e] = dv[mt][dt][e] = 0.f;

  if constexpr (kSparse && has_bias<typename V::Score>) {
    // A full dbias: the zeros of every row of the key block first (the walk's first barrier orders them before
    // the visited blocks' stores; after the walk they overwrote them: its empty qb has no visited range).
    if (p.dbias != nullptr && p.dbias_zero_rest)
      zero_unvisited_dbias<kBM, kBN, kThreads>(p, tile.b, tile.hk * group, group, 0, -1, n0, nq_rows, nk, tid);
  }

  constexpr float kLog2e = 1.4426950408889634f;
  // dQ reductions: this lane's element (row q_row0 + g, column q_col0 + 2 t4) of the first head's row
  // 0; steps add the query block's offset, the fragments constants.
  const int acc_lane = (q_row0 + g) * kD + q_col0 + 2 * t4;
  const bool full_d = p.f.d == kD;
  int hh = kSparse ? cur.hh : 0, i_block = kSparse ? st.i : first;  // step s: head h0 + hh, query block i_block
#pragma unroll 1
  for (int s = 0; kSparse ? cur.hh < group : s < steps; ++s) {
    const int m0 = i_block * kBM;
    SparseBwdStep st_next;  // sparse: the next step, for the prefetch (walked again at the end: fewer live registers)
    SparseBwdCursor cur_next;
    if constexpr (kSparse) cur_next = ql.next({cur.hh, cur.it + 1}, st_next);
    const int i_next = kSparse ? st_next.i : (i_block < last ? i_block + 1 : first);
    const int hh_next = kSparse ? cur_next.hh : (i_block < last ? hh : hh + 1);
    copy_wait<0>();
    __syncthreads();  // Q(s), dO(s) visible to all; every warp is done with step s - 1
    if constexpr (kStages == 2) {
      if (kSparse ? cur_next.hh < group : s + 1 < steps) load_step(s + 1, hh_next, i_next);
      copy_commit();
    }
    const bool band = kSparse && st.partial && spec->rule == SparseRule::band;  // sparse: the band is the rule
    const bool needs_mask = kSparse ? band || n0 + kBN > nk : qb.needs_mask(i_block);

    if (warp < Shape::kSWarps) {
      const float* const rows = s_rows(s);
      // Sparse partial blocks with bits or local + global: the rule's verdict first, while S is not live yet.
      std::uint64_t visible = ~std::uint64_t{0};
      if constexpr (kSparse) {
        if (st.partial && spec->rule != SparseRule::band)
          visible = sparse_rule_visible<kSMT, kSNT>(*spec, p.f, ql.c, tile.b, tile.hk * group + hh, st.r, nq, nk,
                                                    m0 + s_row0 + g, n0 + s_col0 + 2 * t4);
      }
      float sc[kSMT][kSNT][4];
      gemm_qk<E, TQ, TKV, kSMT, kSNT, kD>(sc, sq(s), a_q, sk, b_k);
      const auto at =  // the hooks' coordinates (the lengths only for a score that reads them)
        with_lengths<typename V::Score>(ScoreAt{tile.b, tile.hk * group + hh, tile.hk, 0, 0}, nq, nk, p.f.var);
      bias.template score<V, Layout::query_major, true>(sc, p.f, needs_mask, kSparse && !band ? ends : bm,
                                                        m0 + s_row0 + g, n0 + s_col0 + 2 * t4, at, s, m0, n0);
      if constexpr (kSparse) apply_visible(sc, visible);
      // P = exp2(logit - LSE log2 e) -> the P tile; LSE = +inf for rows out of range or fully masked
      // (LSE = -inf), so their P is 0 (and their logits are all masked). sc keeps dS / (dP - D_i):
      // ds_factor: P times the score's derivative (common/score.cuh); the scale joins at the end.
#pragma unroll
      for (int mt = 0; mt < kSMT; ++mt)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int r = s_row0 + mt * 16 + g + 8 * hh;
          const float l = rows[r];
          const float lse2 = m0 + r >= nq_rows || l == -INFINITY ? INFINITY : l * kLog2e;
          // Dropout (FlashAttention Alg. 4): the P tile (dV += P^T dO) holds P Z / (1 - p); sc keeps
          // ds_factor with the sign bit set where the element is dropped (ds_factor >= 0), for dP below.
          bool keep[kSNT][2];
          if constexpr (V::Prob::kDropout) {
            for_each_keep<V, kSNT>(p.f.var, at.b, at.h, m0 + r, n0 + s_col0 + 2 * t4,
                                   [&](int nt, int e, bool k) { keep[nt][e] = k; });
          }
#pragma unroll
          for (int nt = 0; nt < kSNT; ++nt) {
            float pr[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float c = sc[mt][nt][2 * hh + e];  // the kept value: x, or the score's carry
              pr[e] = ex2(fmaf(score_of_kept<V>(c, p.f), p.f.mul, -lse2));
              sc[mt][nt][2 * hh + e] = ds_factor<V>(pr[e], c, p.f);
              if constexpr (V::Prob::kDropout) {
                pr[e] = keep[nt][e] ? pr[e] * p.f.var.drop_scale : 0.f;
                if (!keep[nt][e]) sc[mt][nt][2 * hh + e] = -sc[mt][nt][2 * hh + e];
              }
            }
            *reinterpret_cast<std::uint32_t*>(p_tile + st_p.at(mt, hh, nt)) = E::pack(pr[0], pr[1]);
          }
        }

      float dp[kSMT][kSNT][4];
      gemm_qk<E, TQ, TKV, kSMT, kSNT, kD>(dp, sdo(s), a_q, sv, b_k);
#pragma unroll
      for (int mt = 0; mt < kSMT; ++mt)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const float dsum = rows[kBM + s_row0 + mt * 16 + g + 8 * hh];  // 0 for rows out of range
#pragma unroll
          for (int nt = 0; nt < kSNT; ++nt)
#pragma unroll
            for (int e = 2 * hh; e < 2 * hh + 2; ++e) {
              if constexpr (V::Prob::kDropout) {  // dP = (dO V^T) Z / (1 - p); dS = P (dP - D_i) dscore
                const float f = sc[mt][nt][e];
                const float dpz = signbit(f) ? 0.f : dp[mt][nt][e] * p.f.var.drop_scale;
                dp[mt][nt][e] = fabsf(f) * (dpz - dsum);
              } else {
                dp[mt][nt][e] = sc[mt][nt][e] * (dp[mt][nt][e] - dsum);
              }
            }
        }
      store_frags<E, TP>(dp, 1.f, ds_tile, st_p);
    }
    __syncthreads();  // P and dS visible to all

    // The three products into P/dS: dV += P^T dO, dQ = dS K, dK += dS^T Q.
    auto gemm_t = [&](auto& c, std::uint32_t sa, std::uint32_t a_base, std::uint32_t sb, std::uint32_t b_base) {
      gemm_smem_a<E, TP, TQ, true, kKMT, kKDT, kBM>(c, sa, a_base, sb, b_base);
    };
    if (warp < Shape::kKWarps) gemm_t(dv, sp, a_pt, sdo(s), b_qt);
    float dq[kQMT][kQDT][4];
#pragma unroll
    for (int mt = 0; mt < kQMT; ++mt)
#pragma unroll
      for (int dt = 0; dt < kQDT; ++dt)
#pragma unroll
        for (int e = 0; e < 4; ++e) dq[mt][dt][e] = 0.f;
    if (warp < Shape::kQWarps) gemm_smem_a<E, TP, TKV, false, kQMT, kQDT, kBN>(dq, sds, a_ds, sk, b_kt);

    // dQ_i += dS K: fp32 reductions into the workspace (pairs of columns as one 8-byte reduction on
    // sm_90); deterministic: a pair's two terms in fixed point as one 64-bit integer reduction
    // (common/repro_dq.cuh), the same loops. A whole block (every row below nq, D = the kernel's D)
    // takes the unchecked path: one base address and constant offsets. add2(offset, row slot, x, y).
    if (warp < Shape::kQWarps) {
      const std::int64_t row0 = hb.ws0 + hh * hb.ws_h + m0, acc0 = row0 * kD + acc_lane;
      auto each_pair = [&](auto&& add2) {
        if (full_d && m0 + kBM <= nq_rows) {
#pragma unroll
          for (int mt = 0; mt < kQMT; ++mt)
#pragma unroll
            for (int hr = 0; hr < 2; ++hr)
#pragma unroll
              for (int dt = 0; dt < kQDT; ++dt)
                add2(acc0 + (mt * 16 + 8 * hr) * kD + dt * 8, mt * 2 + hr, dq[mt][dt][2 * hr], dq[mt][dt][2 * hr + 1]);
        } else {
#pragma unroll
          for (int mt = 0; mt < kQMT; ++mt)
#pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
              if (m0 + q_row0 + mt * 16 + g + 8 * hr < nq_rows) {
#pragma unroll
                for (int dt = 0; dt < kQDT; ++dt) {
                  if (q_col0 + dt * 8 + 2 * t4 < p.f.d) {
                    add2(acc0 + (mt * 16 + 8 * hr) * kD + dt * 8, mt * 2 + hr, dq[mt][dt][2 * hr],
                         dq[mt][dt][2 * hr + 1]);
                  }
                }
              }
            }
        }
      };
      auto slot_row = [&](int slot) { return m0 + q_row0 + (slot / 2) * 16 + g + 8 * (slot % 2); };
      // deterministic: the row slot's unit, loaded with the step's LSE (0 past nq), and workspace row
      const float* const units = s_rows(s) + 2 * kBM - m0;
      add_dq_pairs<kQMT * 2>(
          p, each_pair, [&](int slot) { return units[slot_row(slot)]; },
          [&](int slot) { return row0 - m0 + slot_row(slot); });
    }
    if (warp < Shape::kKWarps) gemm_t(dk, sds, a_pt, sq(s), b_qt);
    if constexpr (has_bias<typename V::Score>) {  // dbias = dS, by rows from the dS tile (common/dbias.cuh)
      if (p.dbias != nullptr)
        store_dbias_tile<false, TP, E, kBM, kBN, kThreads>(p, ds_tile, tile.b, tile.hk * group + hh, m0, n0, nq_rows,
                                                            nk, tid);
    }

    if constexpr (kStages == 1) {
      if (kSparse ? cur_next.hh < group : s + 1 < steps) {  // (a shared bool moved the dense D = 64 SASS)
        __syncthreads();  // every warp is done with Q(s), dO(s)
        load_step(s + 1, hh_next, i_next);
      }
      copy_commit();
    }
    i_block = i_next;
    hh = hh_next;
    if constexpr (kSparse) cur = ql.next({cur.hh, cur.it + 1}, st);
  }

  if constexpr (!kSparse && has_bias<typename V::Score>) {  // the zeros of the rows no step visited (common/dbias.cuh)
    if (p.dbias != nullptr && p.dbias_zero_rest)
      zero_unvisited_dbias<kBM, kBN, kThreads>(p, tile.b, tile.hk * group, group, first, last, n0, nq_rows, nk, tid);
  }

  // dK (times the scale) and dV -> the K and V tiles -> global rows of the kv head.
  copy_wait<0>();
  if (p.grad_f32) {  // fp32 gradients: from the registers, no staging
    if (warp < Shape::kKWarps) store_dk_dv_f32(p, tile, n0, nk, dk, dv, k_row0, k_col0, lane);
    return;
  }
  __syncthreads();  // every warp is done with K and V (and the loads have landed when steps == 0)
  if (warp < Shape::kKWarps) {
    const FragStore<TKV> st_kv(k_row0, k_col0, lane);
    store_frags<E, TKV>(dk, p.ds_scale, smem + (sk - s_base), st_kv);
    store_frags<E, TKV>(dv, 1.f, smem + (sv - s_base), st_kv);
  }
  __syncthreads();
  store_dk_dv<TKV, kD, kThreads>(p, tile, n0, nk, smem + (sk - s_base), smem + (sv - s_base), tid);
}

}  // namespace flatattn::cuda
