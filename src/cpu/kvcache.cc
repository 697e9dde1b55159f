// The CPU engine's attention over a KV cache (forward_kvcache, include/flatattn/kvcache.h; the problem is
// validated and normalized by src/core/validate_kvcache.cc, contiguous caches as one page per cache row).
//
// 1. The append: each new key/value row is converted to fp32, rotated (src/core/rotary.h) and stored in the
//    cache dtype, before any attention (so a sequence's queries see its own new keys).
// 2. The queries: one work item per (sequence b, kv head, split of the key range). The G = Hq / Hkv query
//    heads of the kv head and the Nq query rows form one tile of G * Nq rows (GQA packing: each key and
//    value row is read from the cache once per group), scaled and rotated in fp32. The item walks its keys
//    in blocks of kBlockN gathered through the page table into fp32 (no N x N: one block of logits at a
//    time), applies the variant's score hook (src/cpu/score.h), the mask, and the online softmax with fp32
//    accumulation (Dao et al., FlashAttention-2, Sec. 3.1).
// 3. Split-KV (as FlashAttention-2's decoding, "Flash-Decoding", Dao et al. 2023): with few (b, kv head)
//    items against the threads, the key range is cut into splits computed independently; their partial
//    (O, max, sum) are combined with LSE weights, sinks joining the denominator once. num_splits > 0 forces
//    the count (empty splits contribute nothing).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "src/core/backend.h"
#include "src/core/half.h"
#include "src/core/rotary.h"
#include "src/cpu/gemm.h"
#include "src/cpu/score.h"

namespace flatattn::cpu {

namespace {

constexpr std::int64_t kBlockN = 64;  // keys per block (a multiple of simd::kWidth)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// n elements of dtype dt at element offset off of p, as fp32.
void to_float(const void* p, DType dt, std::int64_t off, std::int64_t n, float* dst) {
  switch (dt) {
    case DType::f32: std::copy_n(static_cast<const float*>(p) + off, n, dst); break;
    case DType::bf16: {
      const auto* s = static_cast<const std::uint16_t*>(p) + off;
      for (std::int64_t e = 0; e < n; ++e) dst[e] = bf16_to_float(s[e]);
      break;
    }
    case DType::f16: {
      const auto* s = static_cast<const std::uint16_t*>(p) + off;
      for (std::int64_t e = 0; e < n; ++e) dst[e] = f16_to_float(s[e]);
      break;
    }
    default:
      for (std::int64_t e = 0; e < n; ++e) dst[e] = load_float(p, dt, off + e);
  }
}


/// n fp32 values stored (rounded to nearest even) at element offset off of p, dtype dt.
void from_float(const float* src, std::int64_t n, void* p, DType dt, std::int64_t off) {
  if (dt == DType::f32) {
    std::copy_n(src, n, static_cast<float*>(p) + off);
    return;
  }
  for (std::int64_t e = 0; e < n; ++e) store_double(p, dt, off + e, static_cast<double>(src[e]));
}

/// Element offset of (key position pos, head h) of sequence b (kv_problem.h's addressing).
std::int64_t cache_offset(const KvProblem& p, const PageStrides& s, std::int64_t b, std::int64_t pos, std::int64_t h) {
  const std::int64_t page = p.paged ? p.block_table[b * p.block_table_stride + pos / p.page_size]
                                    : (p.cache_batch_idx ? p.cache_batch_idx[b] : b);
  return page * s.page + (pos % p.page_size) * s.row + h * s.h;
}

/// Rotates row x (fp32) in place at rotary position pos (no-op without rotary).
void rotate(const KvProblem& p, const KvTensors& t, float* x, std::int64_t pos) {
  if (p.rotary_dim == 0) return;
  const std::int64_t row = pos * t.rotary_stride;
  rotate_row<float>(x, p.rotary_dim, p.rotary_interleaved, t.rotary_cos, t.rotary_sin,
                    [&](const void* tab, std::int64_t c) { return load_float(tab, p.dtype, row + c); });
}

/// Step 1: the new keys (rotated) and values into the cache.
void append(const KvProblem& p, const KvTensors& t, int threads) {
  if (p.nnew == 0) return;
  const std::int64_t items = p.batch * p.nnew;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> row(static_cast<std::size_t>(p.d));
#pragma omp for schedule(static)
    for (std::int64_t it = 0; it < items; ++it) {
      const std::int64_t b = it / p.nnew, j = it % p.nnew, pos = rotary_key_position(p.cache_seqlens[b], j);
      for (std::int64_t h = 0; h < p.hkv; ++h) {
        to_float(t.k_new, p.dtype, b * t.sk_new.b + j * t.sk_new.n + h * t.sk_new.h, p.d, row.data());
        rotate(p, t, row.data(), pos);
        from_float(row.data(), p.d, t.k_cache, p.dtype, cache_offset(p, t.skc, b, pos, h));
        to_float(t.v_new, p.dtype, b * t.sv_new.b + j * t.sv_new.n + h * t.sv_new.h, p.d, row.data());
        from_float(row.data(), p.d, t.v_cache, p.dtype, cache_offset(p, t.svc, b, pos, h));
      }
    }
  }
}

/// The split count: num_splits when given; else enough splits for the threads when the (b, kv head) items
/// are fewer than them, each split at least 4 key blocks.
int choose_splits(const KvProblem& p, int threads, std::int64_t longest) {
  if (p.num_splits > 0) return p.num_splits;
  const std::int64_t items = p.batch * p.hkv;
  if (items >= threads) return 1;
  const std::int64_t by_threads = (threads + items - 1) / items;
  const std::int64_t by_keys = std::max<std::int64_t>(1, longest / (4 * kBlockN));
  return static_cast<int>(std::max<std::int64_t>(1, std::min(by_threads, by_keys)));
}

/// The tile of one work item: R = G * Nq rows (padded to Rp, a multiple of kRowAlign) of head dim D (padded
/// to Dp, a multiple of kDimAlign), the layouts of the engine's products (src/cpu/gemm.h).
struct TileDims {
  std::int64_t R, Rp, D, Dp;
};

/// The partial result of one (b, kv head, split): per tile row, the running max m, sum l (both in e^x
/// units) and the unnormalized output acc (Dp floats per row, Rp rows).
struct Partial {
  float* m;
  float* l;
  float* acc;
};

/// Scratch of one thread: the Q tile (kernel A's interleaved layout), a key block as K^T panels, the value
/// block row-major, the logits.
struct Scratch {
  std::vector<float> qt, kp, vb, s, row;
  explicit Scratch(const TileDims& t)
      : qt(static_cast<std::size_t>(t.Rp * t.Dp)), kp(static_cast<std::size_t>(kBlockN * t.Dp)), vb(kp.size()),
        s(static_cast<std::size_t>(t.Rp * kBlockN)), row(static_cast<std::size_t>(t.D)) {}
};

/// Step 2 for one work item: the tile of rows (g, i) of kv head hk of sequence b over keys [k0, k1).
template <class V>
void attend(const KvProblem& p, const KvTensors& t, const VariantData& vd, const TileDims& td, std::int64_t b,
            std::int64_t hk, std::int64_t k0, std::int64_t k1, Partial out, Scratch& w) {
  // Varlen: this sequence's Nq_b rows of the tile (td.R covers the longest); r = g * nqb + i.
  const std::int64_t nqb = p.nq_of(b), q0 = p.q_start(b);
  const std::int64_t G = p.group(), R = G * nqb, Rp = td.Rp, D = td.D, Dp = td.Dp;
  const std::int64_t cached = p.cache_seqlens[b], nk = cached + p.nnew;
  const std::int64_t lp = p.cache_leftpad ? p.cache_leftpad[b] : 0;
  const bool per_query = p.mask.masked();
  std::fill_n(out.m, Rp, kNegInf);
  std::fill_n(out.l, Rp, 0.f);
  std::fill_n(out.acc, Rp * Dp, 0.f);
  // The tile's visible key range (union over rows), clipped to the item's keys.
  std::int64_t lo = nk, hi = -1;
  for (std::int64_t i = 0; i < nqb; ++i) {
    lo = std::min(lo, std::max(lp, p.mask.lo(i, nqb, nk)));
    hi = std::max(hi, p.mask.hi(i, nqb, nk));
  }
  k0 = std::max(k0, lo);
  k1 = std::min(k1, hi + 1);
  if (k0 >= k1) return;
  // Q tile: rows r = g * Nq + i of query head h = hk * G + g, rotated, times the softmax scale (the score
  // hooks then see S = (scale q) . k, the engine's convention: cpu_variant_data), stored interleaved by
  // kMrA rows (gemm_panels' A), zero in the padding.
  std::fill(w.qt.begin(), w.qt.end(), 0.f);
  std::vector<float>& row = w.row;
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int64_t g = r / nqb, i = r % nqb;
    to_float(t.q, p.dtype, b * t.sq.b + (q0 + i) * t.sq.n + (hk * G + g) * t.sq.h, D, row.data());
    rotate(p, t, row.data(), rotary_query_position(cached, i, per_query));
    // The rotated channels in q's dtype, as the CUDA kernels store them (FlashAttention-2's semantics).
    for (std::int64_t e = 0; e < p.rotary_dim; ++e) row[e] = static_cast<float>(round_to(p.dtype, row[e]));
    float* dst = w.qt.data() + (r / kMrA) * kMrA * Dp + r % kMrA;
    for (std::int64_t e = 0; e < D; ++e) dst[e * kMrA] = row[e] * p.scale;
  }
  std::fill(w.kp.begin(), w.kp.end(), 0.f);  // padding channels and keys stay zero
  std::fill(w.vb.begin(), w.vb.end(), 0.f);
  for (std::int64_t j0 = k0; j0 < k1; j0 += kBlockN) {
    const std::int64_t n = std::min(kBlockN, k1 - j0);
    if (n < kBlockN) {  // the last block: keys past n must be zero (a stale value row times P = 0 is fine,
      std::fill(w.kp.begin(), w.kp.end(), 0.f);  // but a stale NaN is not)
      std::fill(w.vb.begin(), w.vb.end(), 0.f);
    }
    for (std::int64_t j = 0; j < n; ++j) {  // K^T in panels of kPanel keys, V row-major
      to_float(t.k_cache, p.dtype, cache_offset(p, t.skc, b, j0 + j, hk), D, row.data());
      float* kd = w.kp.data() + (j / kPanel) * Dp * kPanel + j % kPanel;
      for (std::int64_t e = 0; e < D; ++e) kd[e * kPanel] = row[e];
      to_float(t.v_cache, p.dtype, cache_offset(p, t.svc, b, j0 + j, hk), D, w.vb.data() + j * Dp);
    }
    // S = Q K^T over the block (kBlockN columns; the tail past n is masked below).
    gemm_panels(w.qt.data(), Rp, Dp, w.kp.data(), kBlockN / kPanel, w.s.data(), kBlockN);
    for (std::int64_t g = 0; g < G; ++g) {
      ScoreAt at{static_cast<int>(b), static_cast<int>(hk * G + g), static_cast<int>(hk), 0, static_cast<int>(j0),
                 static_cast<int>(nk - nqb)};
      apply_score<V>(vd, at, w.s.data() + g * nqb * kBlockN, nqb, kBlockN, kBlockN, nullptr);
    }
    // Mask, then the online softmax: S becomes P (rows without a visible key: zeros), the accumulator is
    // rescaled, and O += P V in one product over the tile.
    for (std::int64_t r = 0; r < Rp; ++r) {
      float* sr = w.s.data() + r * kBlockN;
      if (r >= R) {
        std::fill(sr, sr + kBlockN, 0.f);
        continue;
      }
      const std::int64_t i = r % nqb;
      const std::int64_t vlo = std::max(lp, p.mask.lo(i, nqb, nk)), vhi = p.mask.hi(i, nqb, nk);
      float mx = kNegInf;
      for (std::int64_t j = 0; j < kBlockN; ++j) {
        const std::int64_t key = j0 + j;
        if (j >= n || key < vlo || key > vhi) sr[j] = kNegInf;
        mx = std::max(mx, sr[j]);
      }
      if (mx == kNegInf) {  // nothing visible in this block for this row
        std::fill(sr, sr + kBlockN, 0.f);
        continue;
      }
      const float m_new = std::max(out.m[r], mx);
      const float corr = std::exp(out.m[r] - m_new);  // 0 when the old max is -inf
      const float sum = simd::exp_shift_sum(sr, kBlockN, m_new);
      out.l[r] = out.l[r] * corr + sum;
      out.m[r] = m_new;
      if (corr != 1.f) simd::scale_row(out.acc + r * Dp, Dp, corr);
    }
    gemm_acc(w.s.data(), kBlockN, false, Rp, kBlockN, w.vb.data(), Dp, Dp, out.acc, Dp);
  }
}

}  // namespace

Report forward_kvcache(const KvProblem& p, const KvTensors& t) {
  const int threads = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  append(p, t, threads);  // step 1: before any query reads the cache

  // The tile holds the longest sequence's rows (varlen: max Nq_b, checked by validate_kvcache).
  std::int64_t nq_tile = p.nq;
  if (p.varlen()) {
    nq_tile = 0;
    for (std::int64_t b = 0; b < p.batch; ++b) nq_tile = std::max(nq_tile, p.nq_of(b));
  }
  const std::int64_t G = p.group(), R = G * nq_tile, D = p.d;
  const TileDims td{R, round_up(R, kRowAlign), D, padded_d(D)};
  const std::int64_t Rp = td.Rp, Dp = td.Dp;
  std::int64_t longest = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) longest = std::max<std::int64_t>(longest, p.cache_seqlens[b] + p.nnew);
  const int splits = choose_splits(p, threads, longest);
  const std::int64_t items = p.batch * p.hkv * splits;
  std::vector<float> m(static_cast<std::size_t>(items * Rp)), l(m.size()), acc(static_cast<std::size_t>(items * Rp * Dp));
  const VariantData vd = make_variant_data(p.variant, 1.f, 1.f);

#pragma omp parallel num_threads(static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, items))))
  {
    Scratch w(td);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t it = 0; it < items; ++it) {
      const std::int64_t sp = it % splits, bh = it / splits, b = bh / p.hkv, hk = bh % p.hkv;
      const std::int64_t nk = p.cache_seqlens[b] + p.nnew;
      // Split sp takes whole key blocks [sp * per, (sp + 1) * per) of the sequence's blocks.
      const std::int64_t blocks = (nk + kBlockN - 1) / kBlockN, per = (blocks + splits - 1) / splits;
      const std::int64_t k0 = std::min(nk, sp * per * kBlockN), k1 = std::min(nk, (sp + 1) * per * kBlockN);
      Partial part{m.data() + it * Rp, l.data() + it * Rp, acc.data() + it * Rp * Dp};
      visit_variant(variant_of(p.variant), [&]<class V>() { attend<V>(p, t, vd, td, b, hk, k0, k1, part, w); });
    }
  }

  // Combine the splits (LSE-weighted), add the sink, normalize, store out and lse.
  const std::int64_t rows = p.batch * p.hkv * R;
#pragma omp parallel num_threads(static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, rows))))
  {
    std::vector<float> o(static_cast<std::size_t>(D));
#pragma omp for schedule(static)
    for (std::int64_t x = 0; x < rows; ++x) {
      const std::int64_t r = x % R, bh = x / R, b = bh / p.hkv, hk = bh % p.hkv, nqb = p.nq_of(b);
      if (r >= G * nqb) continue;  // varlen: past this sequence's rows
      const std::int64_t g = r / nqb, i = r % nqb, h = hk * G + g, row_i = p.q_start(b) + i;
      float mx = kNegInf;
      for (int sp = 0; sp < splits; ++sp) mx = std::max(mx, m[(bh * splits + sp) * Rp + r]);
      const bool sink = t.sinks != nullptr;
      const float sink_logit = sink ? t.sinks[h] : kNegInf;
      const float top = std::max(mx, sink_logit);  // the combine's shift
      std::fill(o.begin(), o.end(), 0.f);
      float sum = sink ? std::exp(sink_logit - top) : 0.f;
      if (mx != kNegInf)
        for (int sp = 0; sp < splits; ++sp) {
          const std::int64_t it = bh * splits + sp;
          if (m[it * Rp + r] == kNegInf) continue;
          const float w = std::exp(m[it * Rp + r] - top);
          sum += l[it * Rp + r] * w;
          const float* a = acc.data() + (it * Rp + r) * Dp;
          for (std::int64_t e = 0; e < D; ++e) o[e] += w * a[e];
        }
      const float inv = mx == kNegInf ? 0.f : 1.f / sum;  // no visible key: O = 0
      for (std::int64_t e = 0; e < D; ++e) o[e] *= inv;
      from_float(o.data(), D, t.o, p.dtype, b * t.so.b + row_i * t.so.n + h * t.so.h);
      if (t.lse != nullptr) t.lse[b * t.slse.b + h * t.slse.h + row_i * t.slse.n] = top == kNegInf ? kNegInf : top + std::log(sum);
    }
  }
  Report rep;
  rep.backend = "cpu";
  rep.dataflow = Dataflow::flash;
  rep.block_m = static_cast<int>(R);
  rep.block_n = static_cast<int>(kBlockN);
  rep.kernel = "cpu_kvcache_gqa" + std::string(p.paged ? "_paged" : "_contiguous") + (p.varlen() ? "_varlen" : "") +
               "_splits" + std::to_string(splits);
  return rep;
}

}  // namespace flatattn::cpu
