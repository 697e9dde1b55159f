// The decode kernel: new queries (Nq = 1..16 for decoding, any Nq for chunked prefill) against a paged KV
// cache, Flash dataflow (FlashAttention-2 Alg. 1, online softmax in fp32) with the key range optionally split
// across CTAs (split-KV, "Flash-Decoding": Dao et al. 2023; the partials are merged by combine_kernel.cuh).
//
// One CTA per (row block, split, sequence b x kv head). The Hq/Hkv query heads of the GQA group times the Nq
// rows form the M dimension of one m16n8k16 tile (row r = i * group + g: query i, head hk * group + g), so a
// K/V tile is read once for the whole group (row blocks beyond the first, Nq * group > 16, share it through
// L2: they are adjacent in the grid). The four warps take 16 keys each of a 64-key tile, each with its own
// online softmax state; the warps' states are merged through shared memory at the end. K/V tiles come
// through the page table with cp.async (per-row page lookup; one lookup per tile when the page size is a
// multiple of 64 or the cache is contiguous) in a kStages-deep pipeline.
//
// New rows (new_rows.cuh): the call's new keys/values are appended and q and the new keys rotated (RoPE) inside
// this kernel, not by a kernel before it; a tile that reaches the new positions takes them from k_new/v_new.
//
// Metadata (kv_meta.cuh): the CTA checks its sequence before it reads any cache row or writes anything; a
// refused sequence writes nothing (with splits: a marker LSE that makes the combine skip the rows).
#pragma once

#include <cmath>
#include <cstdint>

#include "src/core/variant.h"
#include "src/cuda/common/copy.cuh"
#include "src/cuda/common/dtype.cuh"
#include "src/cuda/common/ldmatrix.cuh"
#include "src/cuda/common/mma.cuh"
#include "src/cuda/common/pdl.cuh"
#include "src/cuda/common/smem_tile.cuh"
#include "src/cuda/common/softmax.cuh"
#include "src/cuda/common/warp_gemm.cuh"
#include "src/cuda/decode/cluster_merge.cuh"
#include "src/cuda/decode/decode_tile.h"
#include "src/cuda/decode/kv_meta.cuh"
#include "src/cuda/decode/new_rows.cuh"
#include "src/cuda/decode/row_finish.cuh"

namespace flatattn::cuda {

/// Row r of the (sequence, kv head) -> query i and query head h.
FLATATTN_DEVICE void row_coords(const DecodeParams& p, int hk, int r, int& i, int& h) {
  i = r / p.group;
  h = hk * p.group + (r - i * p.group);
}

/// The visible keys [lo, hi] of query i of nq of a sequence with n_k keys from lp (the band of
/// src/core/mask.h, bottom-right aligned, intersected with [lp, n_k)).
FLATATTN_DEVICE void visible_keys(const DecodeParams& p, int i, int nq, int n_k, int lp, int& lo, int& hi) {
  const long long diag = static_cast<long long>(i) + n_k - nq;
  long long l = p.left < 0 ? 0 : diag - p.left;
  long long h = p.right < 0 ? n_k - 1 : diag + p.right;
  if (l < lp) l = lp;
  if (h > n_k - 1) h = n_k - 1;
  lo = static_cast<int>(l);
  hi = static_cast<int>(h < l - 1 ? l - 1 : h);
}

/// Issues the cp.async copies of key tile `tile` (positions 64 tile ..) of the CTA's (sequence, kv head) into
/// shared K/V tiles sk/sv; rows outside [k_lo, k_hi) are zero-filled and not read (the caller passes k_hi <=
/// cache_seqlens[b] when the new rows come from k_new: fill_new_rows writes those after the copies land).
template <int D>
FLATATTN_DEVICE void load_kv_tile(const DecodeParams& p, const KvSeq& s, int b, int hk, int tile, int k_lo,
                                  int k_hi, std::uint32_t sk, std::uint32_t sv, int tid) {
  using C = DecodeTile<D>;
  using Tile = SmemTile<C::kBN, D>;
  constexpr int kChunks = D / 8, kRowStep = C::kThreads / kChunks, kIters = C::kBN / kRowStep;
  static_assert(C::kThreads % kChunks == 0 && C::kBN % kRowStep == 0, "whole rows per pass");
  const int c = (tid % kChunks) * 8, r0 = tid / kChunks, t0 = tile * C::kBN;
  const std::uint16_t* kc = static_cast<const std::uint16_t*>(p.k_cache) + hk * p.kc_h + c;
  const std::uint16_t* vc = static_cast<const std::uint16_t*>(p.v_cache) + hk * p.vc_h + c;
  // One page for the whole tile: a contiguous cache, or pages of a multiple of 64 tokens.
  const bool one_page = p.block_table == nullptr || (p.page_size % C::kBN) == 0;
  int row0 = 0, page0 = -1;
  if (one_page) {
    // The page of the tile's first valid position; position t0 is row t0 - slot * page_size of it (the tile
    // starts on a multiple of 64 and so does every page).
    int slot, r;
    page_split(p, t0 > k_lo ? t0 : k_lo, slot, r);
    page0 = page_of(p, s, b, slot);
    row0 = t0 - slot * p.page_size;
  }
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int r = r0 + it * kRowStep, pos = t0 + r;
    bool pred = pos >= k_lo && pos < k_hi;
    std::int64_t ko = 0, vo = 0;
    if (one_page) {
      pred = pred && page0 >= 0;
      ko = page0 * p.kc_page + static_cast<std::int64_t>(row0 + r) * p.kc_row;
      vo = page0 * p.vc_page + static_cast<std::int64_t>(row0 + r) * p.vc_row;
    } else if (pred) {
      int slot, row;
      page_split(p, pos, slot, row);
      const int pg = page_of(p, s, b, slot);
      pred = pg >= 0;
      ko = pg * p.kc_page + static_cast<std::int64_t>(row) * p.kc_row;
      vo = pg * p.vc_page + static_cast<std::int64_t>(row) * p.vc_row;
    }
    const std::uint32_t so = Tile::offset(r, c);
    copy_16(sk + so, pred ? static_cast<const void*>(kc + ko) : p.k_cache, pred);
    copy_16(sv + so, pred ? static_cast<const void*>(vc + vo) : p.v_cache, pred);
  }
}

/// kCluster: cluster-FLAT decoding (sm_90): the num_splits CTAs of grid dimension y are one thread-block cluster
/// and merge through distributed shared memory (cluster_merge.cuh) instead of partials and a combine kernel.
template <class E, int D, class V, bool kCluster = false>
__global__ void __launch_bounds__(DecodeTile<D>::kThreads) decode_kernel(const DecodeParams p) {
  using C = DecodeTile<D>;
  using TK = SmemTile<C::kBN, D>;
  using TQ = SmemTile<C::kRows, D>;
  using T = typename E::T;
  constexpr int kDT = D / 8;
  extern __shared__ __align__(1024) unsigned char smem[];
  __shared__ unsigned word;
  __shared__ float red_m[C::kWarps][C::kRows], red_l[C::kWarps][C::kRows];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int rb = blockIdx.x, split = blockIdx.y, b = blockIdx.z / p.hkv, hk = blockIdx.z - b * p.hkv;
  const int r_base = rb * C::kRows;
  const std::int64_t rows_total = static_cast<std::int64_t>(p.batch) * p.nq * p.hq;

  // Launched with PDL (common/pdl.cuh): wait for the kernel before it on the stream, then let the combine
  // begin launching.
  pdl_wait();
  pdl_launch_dependents();
  // The writer of the new rows checks the sequence's whole block table (the other CTAs their split's part), so
  // no other CTA can refuse the sequence after the writer has stored into the cache.
  const bool writer = p.k_new != nullptr && rb == 0 && split == 0;
  const KvSeq s = check_seq(p, b, writer ? 0 : split, writer ? 1 : p.num_splits, &word);
  // A refused sequence: nothing written. In a cluster every CTA still reaches the merge's barriers (with an
  // empty key range: n_k = 0), where the bits in `word` make the cluster skip the rows.
  if (!kCluster && s.bad != 0) {
    if (p.num_splits > 1 && tid < C::kRows && r_base + tid < p.rows) {
      int i, h;
      row_coords(p, hk, r_base + tid, i, h);
      p.lse_part[split * rows_total + (static_cast<std::int64_t>(b) * p.nq + i) * p.hq + h] =
          __uint_as_float(kSkippedLseBits);
    }
    return;
  }
  if (writer && s.bad == 0) write_new_rows<E>(p, s, b, hk);
  // This sequence's rows (varlen: group * Nq_b <= p.rows, none when its offsets were refused; batched:
  // p.rows). A row block past them has nothing to do; the test is uniform over a cluster (its CTAs share
  // the row block and the sequence, and s.nq does not depend on the split's block-table part).
  const int rows = p.group * s.nq;
  if (r_base >= rows) return;

  // This thread's two rows (g and g + 8 of the m-tile): their visible keys.
  int lo_r[2], hi_r[2], i_r[2], h_r[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = r_base + (lane >> 2) + 8 * hh;
    if (r < rows) {
      row_coords(p, hk, r, i_r[hh], h_r[hh]);
      visible_keys(p, i_r[hh], s.nq, s.n_k, s.lp, lo_r[hh], hi_r[hh]);
    } else {
      i_r[hh] = 0, h_r[hh] = hk * p.group, lo_r[hh] = 1, hi_r[hh] = 0;
    }
  }
  // The CTA's key range: the union of its rows' bands (lo and hi grow with i), split into 64-key tiles.
  int k_lo, k_hi, unused_i, unused_h;
  {
    const int r_last = min(r_base + C::kRows, rows) - 1;
    int lo_a, hi_a, lo_b, hi_b;
    row_coords(p, hk, r_base, unused_i, unused_h);
    visible_keys(p, unused_i, s.nq, s.n_k, s.lp, lo_a, hi_a);
    row_coords(p, hk, r_last, unused_i, unused_h);
    visible_keys(p, unused_i, s.nq, s.n_k, s.lp, lo_b, hi_b);
    k_lo = lo_a;
    k_hi = hi_b + 1;
  }
  int t_begin = 0, t_end = 0;
  if (k_hi > k_lo) {
    const int first = k_lo / C::kBN, n_tiles = (k_hi - 1) / C::kBN - first + 1;
    const int per = (n_tiles + p.num_splits - 1) / p.num_splits;
    t_begin = first + split * per;
    t_end = min(first + (split + 1) * per, first + n_tiles);
  }

  // Q: the block's rows into shared memory (zeros past the rows), then into registers for the whole loop.
  const std::uint32_t s_base = smem_u32(smem);
  {
    const T* q = static_cast<const T*>(p.q);
    for (int idx = tid; idx < C::kRows * kDT; idx += C::kThreads) {
      const int r = idx / kDT, c = (idx - r * kDT) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r_base + r < rows) {
        int i, h;
        row_coords(p, hk, r_base + r, i, h);
        v = *reinterpret_cast<const uint4*>(q + b * p.q_b + (s.q0 + i) * p.q_n + h * p.q_h + c);
      }
      *reinterpret_cast<uint4*>(smem + TQ::offset(r, c)) = v;
    }
  }
  __syncthreads();
  if (p.rotary_cos != nullptr && s.bad == 0) {  // (a refused sequence in a cluster: no trusted position)
    rope_q_rows<E, TQ>(p, s, smem, min(C::kRows, rows - r_base), [&](int r) {
      int i, h;
      row_coords(p, hk, r_base + r, i, h);
      return i;
    });
    __syncthreads();
  }
  std::uint32_t qf[D / 16][4];
  {
    const std::uint32_t aq = TQ::offset(a_row(lane), a_col(lane));
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(qf[kk], TQ::frag_at(s_base, aq, 0, kk * 16));
  }
  __syncthreads();  // the pipeline reuses the Q tile's memory

  float o[1][kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[0][dt][e] = 0.f;
  float m[1][2] = {{-INFINITY, -INFINITY}}, l[1][2] = {{0.f, 0.f}};

  auto stage_k = [&](int st) { return s_base + st * C::kStageBytes; };
  // The cache rows the copies read: the new positions [seqlen, n_k) come from k_new/v_new (fill_new_rows).
  const int c_hi = p.k_new != nullptr ? min(k_hi, s.seqlen) : k_hi;
#pragma unroll
  for (int st = 0; st < C::kStages - 1; ++st) {
    if (t_begin + st < t_end)
      load_kv_tile<D>(p, s, b, hk, t_begin + st, k_lo, c_hi, stage_k(st), stage_k(st) + C::kTileBytes, tid);
    copy_commit();
  }
  const std::uint32_t bk = TK::offset(b_row(lane), b_col(lane)) + warp * 16 * TK::kRowBytes;
  const std::uint32_t av = TK::offset(a_row(lane), a_col(lane)) + warp * 16 * TK::kRowBytes;
  ScoreAt at{};
  at.b = b;
  at.hk = hk;
  at = with_lengths<typename V::Score>(at, s.nq, s.n_k);

  for (int t = t_begin; t < t_end; ++t) {
    copy_wait<C::kStages - 2>();
    __syncthreads();
    {
      const int tn = t + C::kStages - 1, st = (tn - t_begin) % C::kStages;
      if (tn < t_end) load_kv_tile<D>(p, s, b, hk, tn, k_lo, c_hi, stage_k(st), stage_k(st) + C::kTileBytes, tid);
      copy_commit();
    }
    const int st = (t - t_begin) % C::kStages;
    const std::uint32_t sk = stage_k(st), sv = sk + C::kTileBytes;
    if (c_hi < k_hi && (t + 1) * C::kBN > c_hi) {  // the tile reaches the new rows (uniform over the CTA)
      const int t0 = t * C::kBN, from = max(max(t0, k_lo), c_hi), to = min(t0 + C::kBN, k_hi);
      unsigned char* tile = smem + st * C::kStageBytes;
      fill_new_rows<E, TK>(p, s, b, hk, t0, from - s.seqlen, to - s.seqlen, tile, tile + C::kTileBytes);
      __syncthreads();
    }
    float sc[1][2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) sc[0][nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      std::uint32_t bf[4];
      ldmatrix_x4(bf, TK::frag_at(sk, bk, 0, kk * 16));
      mma_16816<E>(sc[0][0], qf[kk], bf[0], bf[1]);
      mma_16816<E>(sc[0][1], qf[kk], bf[2], bf[3]);
    }
    // Score hook (softcap, ALiBi, or the scale when it is not folded), then the band and the range.
    const int col0 = t * C::kBN + warp * 16 + 2 * (lane & 3);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int hh = e >> 1, j = col0 + nt * 8 + (e & 1);
        float x = sc[0][nt][e];
        if (V::Score::kActive || !p.fold) {
          at.h = h_r[hh];
          at.i = i_r[hh];
          at.j = j;
          x = V::Score::template score<FloatMath>(x, p.var, at);
        }
        sc[0][nt][e] = (j < lo_r[hh] || j > hi_r[hh]) ? -INFINITY : x;
      }
    online_softmax<true>(sc, o, m, l, p.mul);
    std::uint32_t pf[1][1][4];
    pack_p<E>(sc, pf);
    gemm_pv<E, TK, 1, 2, kDT>(o, pf, sv, av);
  }
  copy_wait<0>();
  __syncthreads();  // the stages' memory now holds the warps' outputs

  // Merge the four warps' states: max and sum per row, then the rescaled outputs summed in shared memory.
  float mw[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    mw[hh] = m[0][hh] == -INFINITY ? -INFINITY : m[0][hh] * p.mul;
    const float lw = quad_sum(l[0][hh]);
    if ((lane & 3) == 0) {
      red_m[warp][(lane >> 2) + 8 * hh] = mw[hh];
      red_l[warp][(lane >> 2) + 8 * hh] = lw;
    }
  }
  __syncthreads();
  float* red_o = reinterpret_cast<float*>(smem);  // [warp][row][D]
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = (lane >> 2) + 8 * hh;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < C::kWarps; ++w) mx = fmaxf(mx, red_m[w][r]);
    const float f = mw[hh] == -INFINITY ? 0.f : ex2(mw[hh] - mx);
    float* dst = red_o + (warp * C::kRows + r) * D + 2 * (lane & 3);
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
      *reinterpret_cast<float2*>(dst + dt * 8) = make_float2(o[0][dt][2 * hh] * f, o[0][dt][2 * hh + 1] * f);
  }
  __syncthreads();
  for (int idx = tid; idx < C::kRows * kDT; idx += C::kThreads) {
    const int r = idx / kDT, c = (idx - r * kDT) * 8;
    if (r_base + r >= rows) continue;
    float mx = -INFINITY, sum = 0.f;
#pragma unroll
    for (int w = 0; w < C::kWarps; ++w) mx = fmaxf(mx, red_m[w][r]);
#pragma unroll
    for (int w = 0; w < C::kWarps; ++w) sum += red_m[w][r] == -INFINITY ? 0.f : red_l[w][r] * ex2(red_m[w][r] - mx);
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.f;
#pragma unroll
    for (int w = 0; w < C::kWarps; ++w) {
      const float4* src = reinterpret_cast<const float4*>(red_o + (w * C::kRows + r) * D + c);
      const float4 a = src[0], bq = src[1];
      acc[0] += a.x, acc[1] += a.y, acc[2] += a.z, acc[3] += a.w;
      acc[4] += bq.x, acc[5] += bq.y, acc[6] += bq.z, acc[7] += bq.w;
    }
    if constexpr (kCluster) {  // the CTA's rows for its peers: O unnormalized (in place: this thread's chunk)
      float4* dst = reinterpret_cast<float4*>(red_o + r * D + c);
      dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
      if (c == 0) red_o[C::kRedBytes / 4 + r] = mx, red_o[C::kRedBytes / 4 + C::kRows + r] = sum;
      continue;
    }
    int i, h;
    row_coords(p, hk, r_base + r, i, h);
    float inv, lse;
    if (p.num_splits > 1) {
      finish_row(mx, sum, nullptr, h, inv, lse);  // the sinks join once, in the combine
      const std::int64_t prow = (static_cast<std::int64_t>(b) * p.nq + i) * p.hq + h;
      float4* dst = reinterpret_cast<float4*>(p.o_part + (split * rows_total + prow) * D + c);
      dst[0] = make_float4(acc[0] * inv, acc[1] * inv, acc[2] * inv, acc[3] * inv);
      dst[1] = make_float4(acc[4] * inv, acc[5] * inv, acc[6] * inv, acc[7] * inv);
      if (c == 0) p.lse_part[split * rows_total + prow] = lse;
    } else {
      finish_row(mx, sum, p.sinks, h, inv, lse);
      uint4 v;
      v.x = E::pack(acc[0] * inv, acc[1] * inv);
      v.y = E::pack(acc[2] * inv, acc[3] * inv);
      v.z = E::pack(acc[4] * inv, acc[5] * inv);
      v.w = E::pack(acc[6] * inv, acc[7] * inv);
      *reinterpret_cast<uint4*>(static_cast<T*>(p.o) + b * p.o_b + (s.q0 + i) * p.o_n + h * p.o_h + c) = v;
      if (c == 0 && p.lse != nullptr) p.lse[b * p.lse_b + h * p.lse_h + (s.q0 + i) * p.lse_n] = lse;
    }
  }
  if constexpr (kCluster) {
    static_assert(C::kRedBytes + 2 * C::kRows * 4 <= C::kSmem, "the rows' max and sum follow the outputs");
    cluster_merge<E, D>(p, b, hk, r_base, rows, s.q0, red_o, red_o + C::kRedBytes / 4, red_o + C::kRedBytes / 4 + C::kRows, &word);
  }
}

}  // namespace flatattn::cuda
