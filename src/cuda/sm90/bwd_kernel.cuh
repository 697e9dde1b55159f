// Flash-dataflow backward main kernel on Hopper warpgroup MMA (sm_90a; FlashAttention-3, Shah et al.
// 2024, Sec. 3 and its backward, without the TMA producer warp): one CTA per (key block of 128 keys,
// kv head, sequence), two consumer warpgroups of 64 keys each. K and V stay in shared memory; dK and dV
// accumulate in registers over every query block that sees the keys and over the query heads of the
// kv head's group. The pre-pass (D_i, zeroed dQ accumulator), the dQ conversion, the band mask, the
// visited query blocks (common/bwd_steps.cuh) and the deterministic mode's fixed-point dQ
// (common/repro_dq.cuh) are the sm80 family's.
//
// Dataflow per query block of 64 rows, per warpgroup w (keys 64w .. 64w + 63 of the block):
//   S^T  = K_w Q^T           wgmma m64n64k16 ss, A = K rows, B = Q rows, both K-major (D contiguous)
//   P^T  = exp2(S^T - LSE)   registers: each thread's accumulator rows are keys, columns queries;
//                            masked / out-of-range entries 0 (LSE = +inf for rows past Nq)
//   dP^T = V_w dO^T          wgmma m64n64k16 ss, as S^T
//   dS^T = P^T o (dP^T - D_i)  (o the score's derivative), packed to 16-bit A fragments
//   dV  += P^T dO            wgmma m64n{D}k16 rs, A = P^T registers, B = dO MN-major (as the forward's P V)
//   dK  += dS^T Q            wgmma m64n{D}k16 rs, A = dS^T registers, B = Q MN-major
//   dQ   = dS K              dS^T of both warpgroups -> shared memory ([key][query], 128-byte swizzle,
//                            ordinary stores + fence.proxy.async), then wgmma m64n{D/DqWGs}k16 ss_mn:
//                            A = dS MN-major (the stored dS^T), B = K MN-major, over all 128 keys;
//                            DqWGs = 2: warpgroup w computes the columns [w D/2, (w + 1) D/2); DqWGs = 1:
//                            both compute all D columns and warpgroup 0 adds them (a policy choice;
//                            the table takes 2 at D = 64 and 128). Then the
//                            fp32 additions to the accumulator (red.global.add.v2; deterministic:
//                            int32 fixed point, a column pair per red.global.add.u64).
// dK is scaled by the softmax scale once at the end (dQ in the conversion pass).
//
// Pipeline per step (Q, dO, LSE, D_i double-buffered with cp.async from every thread):
//   wait Q/dO(s) | proxy fence + barrier | issue the loads of step s + 1 | issue S^T, dP^T |
//   wait S^T: mask, exp, pack P^T | wait dP^T: dS^T, pack, store dS^T, proxy fence | issue dV |
//   barrier (dS^T of both warpgroups) | issue dQ, dK | wait dQ: add dQ | wait dK, dV
// so the dQ additions overlap the dK product and the dV product overlaps the barrier.
//
// Registers per thread (D = 128, DqWGs = 2): dK + dV 64 + 64 fp32, S^T / dP^T 32 + 32, P^T and dS^T
// fragments 16 + 16, dQ 32 (live from the barrier to the additions, when S^T and dP^T are dead): ~200
// plus addresses under the 255 of one CTA per SM. Shared memory (D = 128): Q, dO 2 x 2 x 16 KB, K, V 2 x 32
// KB, dS^T 16 KB, LSE/D_i 1 KB: 145 KB (+1 KB alignment); D = 64: 73 KB.
//
// Block-sparse (kSparse, issue 16, docs/sparse.md): the steps are the listed query blocks of the CTA's key
// block, per query head of the group (common/sparse_bwd.cuh SparseQueryBlocks: the transposed q lists, full
// blocks then partial ones, each block_q / 64 steps); unlisted blocks cost no load and no product. Full blocks
// are masked only at the keys' ragged end, partial ones by the rule: the band through the score hook's mask,
// bits or local + global as a verdict computed before S^T is live (sparse_rule_visible on the key-major
// fragments). dQ is added as in the dense kernel (the deterministic sums are order-independent). A full dbias's
// zeros are written before the walk (every row of the key block), the visited blocks' values after them.
//
// Dropout (FlashAttention Alg. 4; the stream of src/core/philox.h: a Philox call serves 16 keys of one query row,
// keys 64 a + 2 q + 8 w + e): the key-major accumulator spreads a call's keys over the 4 warps of a warpgroup
// (thread (wl, g) holds keys 16 wl + g and + 8: q = g >> 1, w = 2 wl (+ 1)), so a thread computing its own keep
// decisions would use 4 of a call's 16 bytes (8 calls per thread per step). Instead the warpgroup computes its
// block's 64 queries x 4 calls in the query-major grouping right after issuing S^T and dP^T (2 calls per thread,
// in the products' shadow), writes the keep bits to shared memory (per query 64 bits, bit 16 q + 2 w + e: the
// call's byte order; 512 bytes per warpgroup), waits on a named barrier of its 128 threads (1 + wg), and each
// thread reads its 32 bits with 8 8-byte loads (query pairs: the two queries' words of one q half adjacent).
// The previous step's reads are done before the step's first __syncthreads, so one buffer serves every step.
//
// Not done yet (FA3 has them): a TMA producer warp with mbarriers instead of cp.async from the
// consumers, setmaxnreg, two CTAs per SM at D = 64, the dQ accumulation through TMA reduce-add from
// shared memory, overlapping step s's softmax with step s - 1's dK/dQ products.
#pragma once

#include <climits>
#include <cstdint>

#include "src/cuda/common/bias_tile.cuh"
#include "src/cuda/common/block_info.cuh"
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
#include "src/cuda/common/bwd_cta.cuh"
#include "src/cuda/common/bwd_rows.cuh"
#include "src/cuda/common/frag_store.cuh"
#include "src/cuda/common/tile_io.cuh"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/sm90/wgmma.cuh"
#include "src/cuda/sm90/warp_roles.cuh"

namespace flatattn::cuda::sm90 {

/// Compile-time shape of the sm90 backward: head dim D and a row T of the policy table
/// (policy/tile_size.h, bwd_tile(Family::sm90, D)), of which it reads block_m, block_n, warps,
/// min_blocks and dq_wd. BlockM = 64 query rows per step, BlockN = 64 * WGs keys per CTA, Q/dO
/// double-buffered, the dQ product on dq_wd warpgroups (each D / dq_wd columns).
template <int D, BwdTileSize T>
struct BwdShape {
  static constexpr int kD = D, kBlockM = T.block_m, kBlockN = T.block_n, kWarps = T.warps, kMinBlocks = T.min_blocks;
  static constexpr int kWGs = kWarps / 4, kThreads = 32 * kWarps, kStages = 2, kDqWGs = T.dq_wd;
  static constexpr int kDQ = D / kDqWGs;  ///< dQ columns per dQ warpgroup
  static_assert(kBlockM == 64 && kBlockN == 64 * kWGs && kWarps % 4 == 0, "one warpgroup per 64 keys, 64-row steps");
  static_assert(kWGs == 2 && (kDqWGs == 1 || kDqWGs == 2), "two warpgroups; dQ on one or both");
  static_assert(D % 64 == 0 && (kDQ % 64 == 0 || 64 % kDQ == 0) && kDQ >= 32 && kDQ <= 256,
                "128-byte swizzle, wgmma N");
  using TQ = SmemTile<kBlockM, D>;         // Q and dO, [query][D]
  using TKV = SmemTile<kBlockN, D>;        // K and V, [key][D] (dK and dV staged here at the end)
  using TDS = SmemTile<kBlockN, kBlockM>;  // dS^T, [key][query]
  /// LSE, D_i and (deterministic) the dQ rows' units u_i of one query block (fp32)
  static constexpr int kRowBytes = 3 * kBlockM * 4;
  /// Q, dO (2 stages each) | K | V | dS^T | LSE, D_i (2 stages), plus 1024 bytes to align the base to
  /// the swizzle atom (every tile is a multiple of 1024 bytes).
  static constexpr int kSmemBytes = 4 * TQ::kBytes + 2 * TKV::kBytes + TDS::kBytes + 2 * kRowBytes + 1024;
  /// The staged bias of variant V (common/bias_tile.cuh): a slot per Q/dO stage after the rows, filled with
  /// Q(s); off (the global reads of bias_at) when its f32 worst case does not fit.
  template <class V>
  using Bias = BiasTileFor<V, Family::sm90, kBlockM, kBlockN, kThreads, kStages, kSmemBytes>;
  /// Dropout's keep bits of one step, after the rows (where a staged bias would go: the variants exclude each
  /// other): per warpgroup 64 queries x 64 keys, one bit each (the kernel's "Dropout" comment); 0 otherwise.
  template <class V>
  static constexpr int kDropBytes = V::Prob::kDropout ? kWGs * kBlockM * 64 / 8 : 0;
};

/// The 16-bit A fragments of a 64 x 64 accumulator tile (sm80 pack_p's layout: k-step kk holds the
/// accumulator chunks 2kk and 2kk + 1) as they are produced: word (i, h) = the pair of row half h of
/// chunk i.
FLATATTN_DEVICE int frag_word(int i, int h) { return (i % 2) * 2 + h; }

/// Dropout's keep bits of one fragment column of the key-major tile: w[e], the word of query e of the column
/// pair; bit[h], this lane's bit of row half h in such a word (a per-thread constant: a test is one LOP3).
struct KeepPair {
  std::uint32_t w[2];
  std::uint32_t bit[2];
  FLATATTN_DEVICE bool keep(int h, int e) const { return (w[e] & bit[h]) != 0u; }
};

/// kSparse (issue 16): the steps are the listed query blocks of the CTA's key block (the transposed lists of
/// `sparse_arg`, a SparseSpec) instead of the band's range; false compiles to the dense kernel (an empty
/// argument, NoSparseArg, and every sparse branch `if constexpr` or a constant condition).
template <class E, class S, class V, bool kSparse = false>
__global__ void __launch_bounds__(S::kThreads, S::kMinBlocks)
    flash_bwd_kernel(const __grid_constant__ BwdParams p, const __grid_constant__ BwdSparseArg<kSparse> sparse_arg) {
  const SparseSpec* const spec = sparse_spec_of(sparse_arg);
  using TQ = typename S::TQ;
  using TKV = typename S::TKV;
  using TDS = typename S::TDS;
  constexpr int kD = S::kD, kBM = S::kBlockM, kBN = S::kBlockN, kThreads = S::kThreads, kDQ = S::kDQ;
  constexpr int kDT = kD / 8;  // 8-column chunks of dK / dV
  static_assert(kBackwardServes<V>, "this variant's probability hook has no backward rule yet");
  extern __shared__ __align__(1024) unsigned char smem_raw[];

  const BwdTile tile(p);
  const int group = p.f.group;
  const BlockInfo kv(p.f, tile.b, tile.hk * group);  // lengths; k/v offsets of the kv head
  const int n0 = tile.n_block * kBN;
  if (n0 >= kv.nk) return;  // varlen: this sequence has fewer keys than the longest
  const int nq = kv.nq, nk = kv.nk;
  const int nq_rows = min(nq, p.f.nq);  // rows past max_seqlen_q have no workspace
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, wl = warp & 3;
  const int g = lane >> 2, t4 = lane & 3;
  const BandMask bm(p.f, nq, nk);
  const BwdQueryBlocks<kBM, kBN> qb(bm, nq, kSparse ? 0 : nq_rows, tile.n_block);
  const int len = qb.count();
  const int steps = len * group;
  // Block-sparse: the listed query blocks of the key block per head of the group; cur is step s's position, st
  // its block (cur.hh == group: no step).
  using Walk = std::conditional_t<kSparse, SparseQueryBlocks<kBM, kBN>, NoSparseArg>;
  const Walk ql = make_sparse_walk<Walk>(spec, tile.b, tile.hk * group, group, tile.n_block, nq_rows);
  SparseBwdCursor cur;
  SparseBwdStep sst;
  if constexpr (kSparse) cur = ql.next(cur, sst);

  const std::uint32_t raw = smem_u32(smem_raw);
  const std::uint32_t base = (raw + 1023u) & ~1023u;  // swizzle atoms start 1024-byte aligned
  unsigned char* const smem = smem_raw + (base - raw);
  auto sq = [&](int st) { return base + st * TQ::kBytes; };
  auto sdo = [&](int st) { return base + (2 + st) * TQ::kBytes; };
  const std::uint32_t sk = base + 4 * TQ::kBytes, sv = sk + TKV::kBytes, sds = sv + TKV::kBytes;
  const std::uint32_t srows = sds + TDS::kBytes;
  // dropout's keep bits: uint32 word (r >> 1) * 4 + qh * 2 + (r & 1) of warpgroup w's 256 holds keys
  // 64 w + 2 q + 8 w' + e, q in {2 qh, 2 qh + 1}, of query r at bit 16 (q & 1) + 2 w' + e (see above)
  [[maybe_unused]] const auto drop_bits = [&](int w) {
    return reinterpret_cast<std::uint32_t*>(smem + (srows - base) + 2 * S::kRowBytes) + w * (kBM * 64 / 32);
  };
  static_assert(!V::Prob::kDropout || S::template Bias<V>::kMaxBytes == 0, "dropout's bits sit where a bias would");
  auto s_rows = [&](int st) {  // fp32 [LSE x BlockM | D_i x BlockM | u_i x BlockM] of stage st
    return reinterpret_cast<const float*>(smem + (srows - base) + st * S::kRowBytes);
  };

  // Step s visits query head h0 + hh, query block i (hh = s / len, i = first + s % len), two counters
  // advanced per step; per-head offsets are the first head's plus hh times a head stride.
  const BwdHeadBases hb(p, tile);
  // The bias tile of a step travels with its Q (nothing when the instance does not stage one).
  const typename S::template Bias<V> bias(p.f.var, tile.b, tile.hk * group, srows + 2 * S::kRowBytes);

  auto load_step = [&](int st, int hh, int i) {
    const int m0 = i * kBM;
    bias.load(st, m0, n0, tid, hh);
    const auto* gq = hb.q + hh * p.f.q_h + m0 * p.f.q_n;
    const auto* gdo = hb.dout + hh * p.do_h + m0 * p.do_n;
    load_tile_stepped<TQ, kD, kThreads>(sq(st), gq, p.f.q_n, nq_rows - m0, p.f.d, p.f.q, tid);
    load_tile_stepped<TQ, kD, kThreads>(sdo(st), gdo, p.do_n, nq_rows - m0, p.f.d, p.dout, tid);
    hb.load_rows<kBM, kThreads>(p, srows + st * S::kRowBytes, hh, m0, nq_rows, tid);
  };
  {
    const auto* gk = static_cast<const std::uint16_t*>(p.f.k) + kv.k + n0 * p.f.k_n;
    const auto* gv = static_cast<const std::uint16_t*>(p.f.v) + kv.v + n0 * p.f.v_n;
    load_tile<TKV, kD, kThreads>(sk, gk, p.f.k_n, nk - n0, p.f.d, p.f.k, tid);
    load_tile<TKV, kD, kThreads>(sv, gv, p.f.v_n, nk - n0, p.f.d, p.f.v, tid);
    if (kSparse ? cur.hh < group : steps > 0) load_step(0, kSparse ? cur.hh : 0, kSparse ? sst.i : qb.first);
    copy_commit();
  }

  // This thread's accumulator rows (keys) key_r0 and key_r0 + 8 of the CTA's block; its columns
  // (queries) 8i + 2 t4 (+1) of the step's block.
  const int key_r0 = wg * 64 + wl * 16 + g;
  const std::uint32_t sk_wg = sk + wg * 64 * TKV::kRowBytes, sv_wg = sv + wg * 64 * TKV::kRowBytes;
  const FragStore<TDS> st_ds(wg * 64 + wl * 16, 0, lane);
  unsigned char* const ds_tile = smem + (sds - base);
  // dQ: this warpgroup's columns [c0, c0 + kDQ) of K (MN-major B operand; c0 % 64 is 0 or 32); it adds
  // them when it is one of the kDqWGs that own dQ columns.
  const bool dq_wg = S::kDqWGs == S::kWGs || wg < S::kDqWGs;
  const int c0 = dq_wg ? wg * kDQ : 0;
  const std::uint32_t sk_dq = sk + (c0 / 64) * TKV::kBlockBytes + (c0 % 64) * 2;
  // dQ reductions: this lane's element (row 16 wl + g, column c0 + 2 t4) of the first head's row 0.
  const int acc_lane = (wl * 16 + g) * kD + c0 + 2 * t4;
  const bool full_d = p.f.d == kD;

  float dk[1][kDT][4], dv[1][kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[0][dt][e] = dv[0][dt][e] = 0.f;

  if constexpr (kSparse && has_bias<typename V::Score>) {
    // A full dbias: the zeros of every row of the key block first (the walk's first barrier orders them before
    // the visited blocks' stores); the dense kernel writes the zeros of the rows it skips after its loop.
    if (p.dbias != nullptr && p.dbias_zero_rest)
      zero_unvisited_dbias<kBM, kBN, kThreads>(p, tile.b, tile.hk * group, group, 0, -1, n0, nq_rows, nk, tid);
  }

  constexpr float kLog2e = 1.4426950408889634f;
  int hh = kSparse ? cur.hh : 0, i_block = kSparse ? sst.i : qb.first;  // step s: head h0 + hh, query block i_block
#pragma unroll 1
  for (int s = 0; kSparse ? cur.hh < group : s < steps; ++s) {
    const int st = s & 1;
    const int m0 = i_block * kBM;
    SparseBwdStep sst_next;  // sparse: the next step, for the prefetch (walked again at the end: fewer live registers)
    SparseBwdCursor cur_next;
    if constexpr (kSparse) cur_next = ql.next({cur.hh, cur.it + 1}, sst_next);
    const int i_next = kSparse ? sst_next.i : (i_block < qb.last ? i_block + 1 : qb.first);
    const int hh_next = kSparse ? cur_next.hh : (i_block < qb.last ? hh : hh + 1);
    copy_wait<0>();       // Q, dO, LSE, D_i of step s have landed (this thread's copies)
    fence_proxy_async();  // ... and are visible to wgmma's operand reads once published
    __syncthreads();      // every thread's copies; every warpgroup is done with step s - 1
    if (kSparse ? cur_next.hh < group : s + 1 < steps) load_step(st ^ 1, hh_next, i_next);
    copy_commit();
    // Sparse partial blocks with bits or local + global: the rule's verdict first, while S^T is not live (on the
    // key-major fragments: keys n0 + key_r0 (+ 8), queries m0 + 2 t4 + ...).
    const bool band = kSparse && sst.partial && spec->rule == SparseRule::band;  // sparse: the band is the rule
    std::uint64_t visible = ~std::uint64_t{0};
    if constexpr (kSparse) {
      if (sst.partial && spec->rule != SparseRule::band)
        visible = sparse_rule_visible<1, 8, Layout::key_major>(*spec, p.f, ql.c, tile.b, tile.hk * group + hh, sst.r,
                                                               nq, nk, n0 + key_r0, m0 + 2 * t4);
    }

    // the hooks' coordinates (the lengths only for a score that reads them; a split score's per-head constant,
    // loaded before the products so that its latency hides behind them)
    const auto at =
        with_lengths<typename V::Score>(ScoreAt{tile.b, tile.hk * group + hh, tile.hk, 0, 0}, nq, nk, p.f.var);
    float sc[1][8][4], dp[1][8][4];
    wgmma_fence();
    gemm_qk_issue<E, TKV, TQ, kBM, kD>(sc[0], sk_wg, sq(st));   // S^T = K_w Q^T
    gemm_qk_issue<E, TKV, TQ, kBM, kD>(dp[0], sv_wg, sdo(st));  // dP^T = V_w dO^T
    if constexpr (V::Prob::kDropout) {
      // The warpgroup's keep bits of the step, in the products' shadow: thread t of the warpgroup evaluates query
      // m0 + (t >> 1), keys 64 w + 2 q + 8 w' + e for q = 2 (t & 1), 2 (t & 1) + 1 (two calls, 32 bits, one
      // conflict-free store), then the warpgroup's barrier.
      const int t = tid & 127, r = t >> 1, qh = t & 1;
      const int j = n0 + wg * 64 + 4 * qh;  // 64-aligned group + 2 q
      const std::uint32_t lo = V::Prob::keep_bits(V::Prob::block(p.f.var, at.b, at.h, m0 + r, j), p.f.var);
      const std::uint32_t hi = V::Prob::keep_bits(V::Prob::block(p.f.var, at.b, at.h, m0 + r, j + 2), p.f.var);
      drop_bits(wg)[(r >> 1) * 4 + qh * 2 + (r & 1)] = lo | (hi << 16);
      if (wg == 0) {  // the warpgroup's barrier (immediate ids: wg is uniform per warpgroup)
        named_sync<1>(128);
      } else {
        named_sync<2>(128);
      }
    }
    wgmma_wait<1>();
    fence_regs(sc[0]);

    // Score and mask on the key-major S^T (rows: keys n0 + key_r0 (+ 8), columns: queries m0 + 2 t4 ...).
    // P^T = exp2(logit - LSE log2 e) -> A fragments pa; sc keeps dS^T / (dP^T - D_i): ds_factor, P^T
    // times the score's derivative (common/score.cuh); the scale joins at the end.
    const float* const rows = s_rows(st);
    if constexpr (kSparse) {
      // Full blocks (and partial ones of another rule): only the keys' ragged end, by a band-free BandMask
      // (built in place: selecting one of two masks goes through the stack).
      BandMask mk = bm;
      if (!band) mk.left = -1, mk.right = -1;
      bias.template score<V, Layout::key_major, true>(sc, p.f, band || n0 + kBN > nk, mk, n0 + key_r0, m0 + 2 * t4,
                                                      at, st, m0, n0);
      apply_visible(sc, visible);
    } else {
      bias.template score<V, Layout::key_major, true>(sc, p.f, qb.needs_mask(i_block), bm, n0 + key_r0, m0 + 2 * t4,
                                                      at, st, m0, n0);
    }
    std::uint32_t pa[4][4], da[4][4];
    // Dropout's keep bits of fragment column i (queries m0 + 8 i + 2 t4 + e, keys n0 + key_r0 + 8 h): element
    // (key, query c + e) is bit 16 (q & 1) + 2 w' + (g & 1) of its query's word of q half g >> 2, with q = g >> 1
    // and w' = 2 wl + h (the warpgroup's bits, written above).
    const float drop_scale = V::Prob::kDropout ? p.f.var.drop_scale : 1.f;
    const int drop_sh = ((g >> 1) & 1) * 16 + 4 * wl + (g & 1);
    auto keep_pair = [&](int i) {
      KeepPair kp{};
      if constexpr (V::Prob::kDropout) {
        const int c = 8 * i + 2 * t4;  // even
        const uint2 w = *reinterpret_cast<const uint2*>(drop_bits(wg) + (c >> 1) * 4 + (g >> 2) * 2);
        kp.w[0] = w.x, kp.w[1] = w.y;
        kp.bit[0] = 1u << drop_sh, kp.bit[1] = 1u << (drop_sh + 2);
      }
      return kp;
    };
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int c = 8 * i + 2 * t4;
      const float2 l = *reinterpret_cast<const float2*>(rows + c);
      const float lse2[2] = {m0 + c >= nq_rows || l.x == -INFINITY ? INFINITY : l.x * kLog2e,
                             m0 + c + 1 >= nq_rows || l.y == -INFINITY ? INFINITY : l.y * kLog2e};
      // Dropout (FlashAttention Alg. 4): P^T Z for dV (its 1 / (1 - p) joins dV once, at the end).
      const KeepPair kp = keep_pair(i);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float pr[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float c = sc[0][i][2 * h + e];  // the kept value: x, or the score's carry
          pr[e] = ex2(fmaf(score_of_kept<V>(c, p.f), p.f.mul, -lse2[e]));
          sc[0][i][2 * h + e] = ds_factor<V>(pr[e], c, p.f);
          if constexpr (V::Prob::kDropout) pr[e] = kp.keep(h, e) ? pr[e] : 0.f;
        }
        pa[i / 2][frag_word(i, h)] = E::pack(pr[0], pr[1]);
      }
    }

    wgmma_wait<0>();
    fence_regs(dp[0]);
    // dS^T = P^T o (dP^T - D_i) -> A fragments da and the dS^T tile (4-byte stores; the 8 rows of a
    // store land in 8 different 16-byte chunks through the swizzle).
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float2 ds = *reinterpret_cast<const float2*>(rows + kBM + 8 * i + 2 * t4);  // 0 past Nq
      const KeepPair kp = keep_pair(i);  // reloaded: keeping the bits live across the products costs registers
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float d0, d1;
        if constexpr (V::Prob::kDropout) {  // dP^T = (V dO^T) Z / (1 - p): a dropped element's dS is P (0 - D_i)
          const float t0 = fmaf(dp[0][i][2 * h], drop_scale, -ds.x), t1 = fmaf(dp[0][i][2 * h + 1], drop_scale, -ds.y);
          d0 = sc[0][i][2 * h] * (kp.keep(h, 0) ? t0 : -ds.x);
          d1 = sc[0][i][2 * h + 1] * (kp.keep(h, 1) ? t1 : -ds.y);
        } else {
          d0 = sc[0][i][2 * h] * (dp[0][i][2 * h] - ds.x);
          d1 = sc[0][i][2 * h + 1] * (dp[0][i][2 * h + 1] - ds.y);
        }
        const std::uint32_t w = E::pack(d0, d1);
        da[i / 2][frag_word(i, h)] = w;
        *reinterpret_cast<std::uint32_t*>(ds_tile + st_ds.at(0, h, i)) = w;
      }
    }
    fence_proxy_async();  // the dS^T stores, for the dQ product's operand reads after the barrier

    fence_regs(dv[0]);
    fence_regs(pa);
    wgmma_fence();
    gemm_pv_issue<E, TQ, kBM, kD>(dv[0], pa, sdo(st));  // dV += P^T dO
    __syncthreads();  // dS^T of both warpgroups is in shared memory

    float dq[kDQ / 8][4];
    fence_regs(dk[0]);
    fence_regs(da);
    wgmma_fence();
    // Issued by every warpgroup, also the one that discards it (DqWGs = 1): a wgmma on a warpgroup-
    // dependent branch makes ptxas serialize every wgmma of the kernel (C7520).
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {  // dQ_w = dS K[:, c0 : c0 + kDQ]
      const std::uint64_t a = desc_sw128(sds + kk * 16 * TDS::kRowBytes, TDS::kBlockBytes, 1024);
      const std::uint64_t b = desc_sw128(sk_dq + kk * 16 * TKV::kRowBytes, TKV::kBlockBytes, 1024);
      Wgmma<E, kDQ>::ss_mn(dq, a, b, kk > 0 ? 1 : 0);
    }
    wgmma_commit();
    gemm_pv_issue<E, TQ, kBM, kD>(dk[0], da, sq(st));  // dK += dS^T Q
    wgmma_wait<1>();  // dV and dQ are done; dK may still run
    fence_regs(dq);
    fence_regs(pa);

    // dQ_i += dS K: fp32 reductions into the workspace (pairs of columns as one 8-byte reduction);
    // deterministic: a pair's two terms in fixed point as one 64-bit integer reduction
    // (common/repro_dq.cuh), the same loops. add2(element offset, row half, x, y).
    const std::int64_t row0 = hb.ws0 + hh * hb.ws_h + m0, acc0 = row0 * kD + acc_lane;
    auto each_pair = [&](auto&& add2) {
      if (!dq_wg) {
        // the other warpgroup adds this block's dQ
      } else if (full_d && m0 + kBM <= nq_rows) {
#pragma unroll
        for (int hr = 0; hr < 2; ++hr)
#pragma unroll
          for (int dt = 0; dt < kDQ / 8; ++dt) add2(acc0 + 8 * hr * kD + dt * 8, hr, dq[dt][2 * hr], dq[dt][2 * hr + 1]);
      } else {
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
          if (m0 + wl * 16 + g + 8 * hr < nq_rows) {
#pragma unroll
            for (int dt = 0; dt < kDQ / 8; ++dt) {
              if (c0 + dt * 8 + 2 * t4 < p.f.d) add2(acc0 + 8 * hr * kD + dt * 8, hr, dq[dt][2 * hr], dq[dt][2 * hr + 1]);
            }
          }
        }
      }
    };
    // deterministic: the two rows' units, loaded with the step's LSE (0 past nq), and workspace rows
    const float* const units = s_rows(st) + 2 * kBM + wl * 16 + g;
    add_dq_pairs<2>(
        p, each_pair, [&](int hr) { return units[8 * hr]; }, [&](int hr) { return row0 + wl * 16 + g + 8 * hr; });
    wgmma_wait<0>();  // dK is done: da and the Q buffer are free
    fence_regs(dk[0]);
    fence_regs(dv[0]);
    fence_regs(da);
    if constexpr (has_bias<typename V::Score>) {  // dbias = dS, by rows from the dS^T tile (common/dbias.cuh)
      if (p.dbias != nullptr)
        store_dbias_tile<true, TDS, E, kBM, kBN, kThreads>(p, ds_tile, tile.b, tile.hk * group + hh, m0, n0, nq_rows,
                                                           nk, tid);
    }
    i_block = i_next;
    hh = hh_next;
    if constexpr (kSparse) cur = ql.next({cur.hh, cur.it + 1}, sst);
  }

  if constexpr (!kSparse && has_bias<typename V::Score>) {  // the zeros of the rows no step visited (common/dbias.cuh)
    if (p.dbias != nullptr && p.dbias_zero_rest)
      zero_unvisited_dbias<kBM, kBN, kThreads>(p, tile.b, tile.hk * group, group, qb.first, qb.last, n0, nq_rows, nk,
                                               tid);
  }

  // dK (times the scale) and dV -> the K and V tiles -> global rows of the kv head. Dropout: P^T Z dO times
  // 1 / (1 - p), once here instead of on every element.
  if constexpr (V::Prob::kDropout) {
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dv[0][dt][e] *= p.f.var.drop_scale;
  }
  copy_wait<0>();
  if (p.grad_f32) {  // fp32 gradients: from the registers, no staging
    store_dk_dv_f32(p, tile, n0, nk, dk, dv, wg * 64 + wl * 16, 0, lane);
    return;
  }
  __syncthreads();  // every warpgroup is done with K and V (and the loads have landed when steps == 0)
  {
    const FragStore<TKV> st_kv(wg * 64 + wl * 16, 0, lane);
    store_frags<E, TKV>(dk, p.ds_scale, smem + (sk - base), st_kv);
    store_frags<E, TKV>(dv, 1.f, smem + (sv - base), st_kv);
  }
  __syncthreads();
  store_dk_dv<TKV, kD, kThreads>(p, tile, n0, nk, smem + (sk - base), smem + (sv - base), tid);
}

}  // namespace flatattn::cuda::sm90
