// The CPU backward pass (FlashAttention-2, Alg. 2, with P recomputed from Q, K and the forward's LSE;
// nothing N x N is stored). Three parallel loops over independent items:
//
//   0. D_i = rowsum(dO o O) for every (batch, head, row).
//   1. dK, dV: one item per (batch, kv head, key block of block_n_dkdv keys). The item owns its dK/dV
//      rows: it walks the query heads of its group and the query tiles that see the block, recomputes
//      S = (scale Q) K^T, x = score(S) (the variant's hook), P = exp(x - LSE), dP = dO V^T,
//      dS = P o (dP - D_i) o dscore(x), and accumulates dV += P^T dO, dK += dS^T (scale Q) in a fixed order.
//      With dropout (FlashAttention Alg. 4), dP is dO V^T o Z / (1 - p) and dV takes P o Z / (1 - p), Z the
//      keep mask regenerated from (seed, offset, b, h, i, j); D_i = rowsum(dO o O) already includes it.
//   2. dQ: one item per (batch, query head, query tile of block_m rows): recomputes S, P, dP, dS per key
//      block of block_n keys and accumulates dQ += dS K, times scale at the end.
//
// Every output element is accumulated by one thread in an order fixed by the plan, so dQ, dK and dV are
// bitwise identical for any thread count and across runs; Options::deterministic is honoured by
// construction (no atomics, no per-thread partial sums). The price is recomputing S and dP in pass 2:
// 7 tile products instead of FA2's 5 (FA2 accumulates dQ with atomics instead). The fp32 and AVX512-BF16 paths
// avoid it where they can (fuses_dq): one pass-1 item then walks all key blocks of one (batch, kv head) in order
// and also accumulates dQ += dS K for its heads' rows, 5 products and no pass 2, with the same bits as pass 2.
//
// Products: bf16 inputs take the forward's path (forward_matmul, src/cpu/amx/amx.h: AMX tiles, AVX512-BF16
// or fp32, FLATATTN_CPU_MATMUL). On the two bf16 paths every product reads bf16 operands in the AMX
// layouts -- S = scale (Q K^T) and dP = dO V^T with Q / dO tiles and K / V panels, dV += P^T dO and
// dK += dS^T Q with P^T / dS^T (transposed from the fp32 tiles, rounded to bf16) and dO / Q key pairs,
// dQ += dS K with dS in bf16 and K pairs -- and accumulates in fp32; P and dS are rounded to bf16 only as
// operands, as on the GPU. Their query tiles are padded to 32 rows in pass 1 (the inner dim of dV and dK)
// and to 16 in pass 2. f16 inputs take the same paths on the forward's exact bf16 pieces (SplitPolicy
// kSplitF16, amx.h): Q, K, V, dO are exactly hi + lo, so S and dP sum exactly the fp32 path's products, S in
// the very order the split forward summed them for its LSE (4 piece products each); P and dS are carried as 2
// pieces (relative error <= 2^-17) and dV, dK, dQ take 3 piece products, lo x lo dropped (kSplitF16 in amx.h has
// the error argument). The fp32 path (f32, or forced) widens everything to the fp32
// tiles of gemm.h.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "src/core/backend.h"
#include "src/core/half.h"
#include "src/core/validate.h"
#include "src/cpu/amx/amx.h"
#include "src/cpu/bf16_products.h"
#include "src/cpu/engine.h"
#include "src/cpu/gemm.h"
#include "src/cpu/pack.h"
#include "src/cpu/schedule.h"
#include "src/cpu/score.h"
#include "src/cpu/simd.h"
#include "src/cpu/sparse_tile.h"
#include "src/cpu/tile.h"
#include "src/cpu/workspace.h"

namespace flatattn::cpu {

namespace {

using simd::vf;

/// Query rows of a pass-1 tile on the bf16 paths are padded to this: the inner dim of dV += P^T dO and
/// dK += dS^T Q (a multiple of kAmxK, and of bf16_transpose's 32-row blocks).
constexpr std::int64_t kBf16RowsDkdv = 32;

/// bf16 scratch out of a float Carver (two per float).
std::uint16_t* take_bf16(Carver& c, std::size_t n) { return reinterpret_cast<std::uint16_t*>(c.take((n + 1) / 2)); }

/// The rows of src from row n0 on (row n0 becomes row 0), for the packers that start at row 0.
Rows from_row(Rows r, std::int64_t n0) {
  r.base += n0 * r.row_stride;
  return r;
}

/// Tiles of one (query tile, key block) step, shared by passes 1 and 2.
struct StepTiles {
  float* q;      ///< scale * Q, row-major [bm][dp] (fp32 path: A of S, B of dK += dS^T Q)
  float* dout;   ///< dO, row-major [bm][dp] (fp32 path: A of dP, B of dV += P^T dO)
  float* s;      ///< S, then P  [bm][ld]
  float* ds;     ///< dP, then dS [bm][ld]
  float* x;      ///< score(S) before the mask [bm][ld] (variants with a score transform only)
  float* lse;    ///< [bm]
  float* di;     ///< [bm]
  std::uint16_t* qb = nullptr;   ///< Q, bf16 row-major [bm][kq] (bf16 paths: unscaled; kq = split_kq)
  std::uint16_t* dob = nullptr;  ///< dO, bf16 row-major [bm][kq] (bf16 paths)
};

StepTiles carve_step(Carver& c, std::size_t bm, std::size_t dp, std::size_t ld, bool keep_scores, bool bf16,
                     std::size_t kq) {
  StepTiles t{};
  if (bf16) {
    t.qb = take_bf16(c, bm * kq);
    t.dob = take_bf16(c, bm * kq);
  } else {
    t.q = c.take(bm * dp);
    t.dout = c.take(bm * dp);
  }
  t.s = c.take(bm * ld);
  t.ds = c.take(bm * ld);
  t.x = keep_scores ? c.take(bm * ld) : nullptr;
  t.lse = c.take(bm);
  t.di = c.take(bm);
  return t;
}

/// Pass 1 scratch: one key block of the dK/dV pass.
struct KvBlockScratch {
  float *kt, *vt;  ///< K^T, V^T panels of the block [bk/kPanel][dp][kPanel] (fp32 path)
  float *dk, *dv;  ///< accumulators [bk][dp]
  StepTiles step;
  // Fused dQ (fuses_dq): dQ += dS K here instead of in pass 2.
  float* kr = nullptr;         ///< K rows of the block [bk][dp] (B operand of dQ += dS K; fp32 path)
  float* dq = nullptr;         ///< dQ of the item's query heads [group][dq_rows][dp] (both paths)
  float* qall = nullptr;       ///< scale * Q of the item's heads, row-major [group][dq_rows][dp], packed once
  float* dout_all = nullptr;   ///< dO of the item's heads, likewise (zero rows past each sequence in both)
  std::int64_t dq_rows = 0;    ///< rows per head in dq: the longest sequence plus one tile's padding
  // bf16 paths (bm padded to kBf16RowsDkdv; SplitPolicy pieces as planes, piece k at k * plane):
  std::uint16_t *kb = nullptr, *vb = nullptr;    ///< K and V of the block as K panels [bk][kq]
  std::uint16_t *qp = nullptr, *dop = nullptr;   ///< Q and dO of the tile as key pairs [pieces][bm][dp]
  std::uint16_t *pt = nullptr, *dst = nullptr;   ///< P^T and dS^T in bf16 [pieces][bk][bm]
  std::int64_t pair_plane = 0, t_plane = 0;      ///< plane sizes of qp / dop and of pt / dst
  std::uint16_t *kp = nullptr, *dsb = nullptr;   ///< fused dQ: K of the block as key pairs [bk][dp], dS [bm][bk]
};

/// Rows per head of the fused dQ accumulator: the longest sequence (varlen: p.nq) plus one tile's padding from any
/// first row (kRowAlign on the fp32 path, kBf16RowsDkdv on the bf16 paths).
std::int64_t fused_dq_rows(const Problem& p, MatmulPath path) {
  return p.nq + (path == MatmulPath::fp32 ? kRowAlign : kBf16RowsDkdv);
}

KvBlockScratch carve_pass1(Carver& c, const Problem& p, const BackwardPlan& plan, MatmulPath path,
                           const SplitPolicy& split, bool fused) {
  const std::size_t dp = static_cast<std::size_t>(padded_d(p.d)), kq = static_cast<std::size_t>(split_kq(split, p.d));
  const std::size_t pieces = static_cast<std::size_t>(split.pieces);
  const std::size_t bk = static_cast<std::size_t>(plan.block_n_dkdv), bm = static_cast<std::size_t>(plan.block_m);
  KvBlockScratch w{};
  w.dk = c.take(bk * dp);
  w.dv = c.take(bk * dp);
  if (path != MatmulPath::fp32) {
    const std::size_t bm2 = static_cast<std::size_t>(round_up(plan.block_m, kBf16RowsDkdv));
    w.kb = take_bf16(c, bk * kq);
    w.vb = take_bf16(c, bk * kq);
    w.pair_plane = static_cast<std::int64_t>(bm2 * dp);
    w.t_plane = static_cast<std::int64_t>(bk * bm2);
    w.qp = take_bf16(c, pieces * bm2 * dp);
    w.dop = take_bf16(c, pieces * bm2 * dp);
    w.pt = take_bf16(c, pieces * bk * bm2);
    w.dst = take_bf16(c, pieces * bk * bm2);
    w.step = carve_step(c, bm2, dp, bk, transforms_scores(p), true, kq);
    if (fused) {  // one piece (fuses_dq): no planes
      w.dq_rows = fused_dq_rows(p, path);
      w.dq = c.take(static_cast<std::size_t>(p.group() * w.dq_rows) * dp);
      w.kp = take_bf16(c, bk * dp);
      w.dsb = take_bf16(c, bm2 * bk);
    }
    return w;
  }
  w.kt = c.take(bk * dp);
  w.vt = c.take(bk * dp);
  w.step = carve_step(c, bm, dp, bk, transforms_scores(p), false, kq);
  if (fused) {
    w.dq_rows = fused_dq_rows(p, path);
    w.kr = c.take(bk * dp);
    w.dq = c.take(static_cast<std::size_t>(p.group() * w.dq_rows) * dp);
    w.qall = c.take(static_cast<std::size_t>(p.group() * w.dq_rows) * dp);
    w.dout_all = c.take(static_cast<std::size_t>(p.group() * w.dq_rows) * dp);
  }
  return w;
}

/// Pass 2 scratch: one query tile of the dQ pass, with the packed K/V of its (b, kv head).
struct QTileScratch {
  float *kt, *vt;  ///< K^T, V^T panels of the whole sequence [nk/kPanel][dp][kPanel] (fp32 path)
  float* k;        ///< K rows [nk][dp] (B operand of dQ; fp32 path)
  float* dq;       ///< accumulator [bm][dp]
  StepTiles step;
  // bf16 paths (bm padded to kAmxRows; SplitPolicy pieces as planes, piece k at k * plane):
  std::uint16_t *kb = nullptr, *vb = nullptr;  ///< K and V of the sequence as K panels [nk][kq]
  std::uint16_t* kp = nullptr;                 ///< K as key pairs [pieces][nk][dp] (B operand of dQ)
  std::uint16_t* dsb = nullptr;                ///< dS in bf16 [pieces][bm][ld]
  std::int64_t kp_plane = 0, ds_plane = 0;     ///< plane sizes of kp and dsb
};

QTileScratch carve_pass2(Carver& c, const Problem& p, const BackwardPlan& plan, MatmulPath path,
                         const SplitPolicy& split) {
  const std::size_t dp = static_cast<std::size_t>(padded_d(p.d)), kq = static_cast<std::size_t>(split_kq(split, p.d));
  const std::size_t pieces = static_cast<std::size_t>(split.pieces);
  const std::size_t nk = static_cast<std::size_t>(round_up(std::max<std::int64_t>(p.nk, 1), kPanel));
  const std::size_t bm = static_cast<std::size_t>(plan.block_m), ld = static_cast<std::size_t>(plan.block_n);
  QTileScratch w{};
  if (path != MatmulPath::fp32) {
    const std::size_t bm2 = static_cast<std::size_t>(round_up(plan.block_m, kAmxRows));
    w.kb = take_bf16(c, nk * kq);
    w.vb = take_bf16(c, nk * kq);
    w.kp_plane = static_cast<std::int64_t>(nk * dp);
    w.ds_plane = static_cast<std::int64_t>(bm2 * ld);
    w.kp = take_bf16(c, pieces * nk * dp);
    w.dsb = take_bf16(c, pieces * bm2 * ld);
    w.dq = c.take(bm2 * dp);
    w.step = carve_step(c, bm2, dp, ld, transforms_scores(p), true, kq);
    return w;
  }
  w.kt = c.take(nk * dp);
  w.vt = c.take(nk * dp);
  w.k = c.take(nk * dp);
  w.dq = c.take(bm * dp);
  w.step = carve_step(c, bm, dp, ld, transforms_scores(p), false, kq);
  return w;
}

/// Whether pass 1 also accumulates dQ (dQ += dS K on the dS it has: 5 tile products, not 7) and pass 2 is
/// skipped: without block sparsity or a bias gradient (those keep their pass 2), when the items of the fused pass
/// (one per batch and kv head: it walks all its key blocks in order, so the dQ rows of its heads are summed by one
/// thread) are at least two per thread, on two paths:
///   fp32: each dQ element is the same chain of FMAs over the keys in ascending order as pass 2's;
///   AVX512-BF16 with one bf16 piece (bf16 inputs, f32 opted in): each dQ element is the same chain of VDPBF16PS
///     over the key pairs (2j, 2j+1) in ascending order as pass 2's (dpbf16_pv reads and writes the fp32
///     accumulator between blocks, and both passes' blocks start at even keys), on the same bf16 dS.
/// Rows that do not see a key add exact zeros (dS = 0), which leave the sum as it is, so both choices give the same
/// bits and the choice may follow the thread count (CpuBackward.FusedDqMatchesTheDqPassBitwise). (One corner:
/// VDPBF16PS flushes denormal results to zero, so a dQ element whose final sum flushed to -0 could read +0 after
/// a trailing zero pair; that needs |dQ| below fp32's smallest normal.) Not fused: AMX (a
/// tile product's internal order over its 32 keys is the hardware's, and the passes' blocks need not align to
/// 32) and split pieces (f16: one product per piece pair per block, so the chain follows the block boundaries).
/// Per-thread scratch (fp32: dQ, Q and dO rows of a kv head's query heads, 3 group Nq D floats; bf16: dQ alone)
/// must stay within kFusedDqMaxBytes.
constexpr double kFusedDqMaxBytes = 64.0 * (1 << 20);
bool fuses_dq(const Problem& p, MatmulPath path, const SplitPolicy& split, int threads) {
  const bool fp32 = path == MatmulPath::fp32;
  const bool path_ok = fp32 || (path == MatmulPath::avx512bf16 && split.pieces == 1);
  const double bytes = (fp32 ? 3.0 : 1.0) * 4.0 * static_cast<double>(p.group() * fused_dq_rows(p, path) * padded_d(p.d));
  return path_ok && !p.sparse.on && p.variant.bias == nullptr &&
         p.batch * p.hkv >= 2 * static_cast<std::int64_t>(threads) && bytes <= kFusedDqMaxBytes;
}

std::size_t thread_floats(const Problem& p, const BackwardPlan& plan, MatmulPath path, const SplitPolicy& split,
                          bool fused) {
  Carver a, b;
  carve_pass1(a, p, plan, path, split, fused);
  if (fused) return a.floats();
  carve_pass2(b, p, plan, path, split);
  return std::max(a.floats(), b.floats());
}

/// Index of row i of head h of sequence b in the D_i buffer.
std::int64_t di_index(const Problem& p, std::int64_t b, const SeqSpan& sp, std::int64_t h, std::int64_t i) {
  return p.varlen ? h * p.cu_seqlens_q[p.batch] + sp.q0 + i : (b * p.hq + h) * p.nq + i;
}

std::size_t di_floats(const Problem& p) {
  return static_cast<std::size_t>(p.hq * (p.varlen ? p.cu_seqlens_q[p.batch] : p.batch * p.nq));
}

/// Loads the per-row inputs of a query tile: scale*Q and dO (interleaved; on the bf16 paths Q and dO as
/// bf16 row-major tiles), LSE and D_i; padded rows get LSE = -inf (so their P and dS rows are zero).
void load_step_rows(const Problem& p, const BwdTensors& t, const float* dvec, std::int64_t b, const SeqSpan& sp,
                    std::int64_t h, std::int64_t i0, std::int64_t rows, std::int64_t rows_pad, const StepTiles& w,
                    const Bf16Products* mm, bool pack = true) {
  const std::int64_t dp = padded_d(p.d);
  if (!pack) {  // the tiles point into rows packed already (the fused dQ's item)
  } else if (mm != nullptr) {
    mm->pack_tile(rows_of(p, t.q, t.sq, b, sp.q0, h), i0, rows, rows_pad, p.d, w.qb);
    mm->pack_tile(rows_of(p, t.dout, t.sdo, b, sp.q0, h), i0, rows, rows_pad, p.d, w.dob);
  } else {
    pack_rows(rows_of(p, t.q, t.sq, b, sp.q0, h), i0, rows, rows_pad, p.d, dp, p.scale, w.q);
    pack_rows(rows_of(p, t.dout, t.sdo, b, sp.q0, h), i0, rows, rows_pad, p.d, dp, 1.f, w.dout);
  }
  for (std::int64_t i = 0; i < rows_pad; ++i) {
    w.lse[i] = i < rows ? t.lse[row_offset(p, t.slse, b, sp.q0, i0 + i, h)] : kNegInf;
    w.di[i] = i < rows ? dvec[di_index(p, b, sp, h, i0 + i)] : 0.f;
  }
}

/// From S (w.s) and dP (w.ds) of rows i0.. and keys k0 .. k0+ncols: P = exp(score(S) - LSE) with the mask
/// (in w.s) and dS = P o (dP - D_i) o dscore(score(S)) (in w.ds). Rows with LSE = -inf (fully masked, or
/// padding) get P = dS = 0. at: the score coordinates of row i0, key k0.
template <class V>
void probs_and_dscores_v(const Problem& p, const SeqSpan& sp, ScoreAt at, std::int64_t rows, std::int64_t rows_pad,
                         std::int64_t ncols, std::int64_t ld, const StepTiles& w, const SparseRows* sparse,
                         const Range& keys) {
  const std::int64_t i0 = at.i, k0 = at.j;
  const VariantData vd = cpu_variant_data(p);
  apply_score<V>(vd, at, w.s, rows_pad, ncols, ld, w.x);
  if (sparse != nullptr) {  // block-sparse: the listed blocks' element mask, keys outside `keys` masked
    sparse->mask(rows, k0, ncols, w.s, ld, keys);
  } else {
    mask_block(p.mask, sp, i0, rows, k0, ncols, w.s, ld);
  }
  for (std::int64_t i = 0; i < rows_pad; ++i) {
    float* s = w.s + i * ld;
    float* ds = w.ds + i * ld;
    if (w.lse[i] == kNegInf) {
      std::memset(s, 0, sizeof(float) * ncols);
      std::memset(ds, 0, sizeof(float) * ncols);
      continue;
    }
    const vf lse = simd::splat(w.lse[i]), di = simd::splat(w.di[i]);
    [[maybe_unused]] alignas(64) float f[kDropoutChunk];  // dropout: the factors of keys j - j % 64 ..
    for (std::int64_t j = 0; j < ncols; j += simd::kWidth) {
      const vf pr = simd::exp_nonpos(simd::load(s + j) - lse);
      vf dp = simd::load(ds + j);
      vf pv = pr;  // the P of dV += P^T dO
      if constexpr (V::Prob::kDropout) {  // FlashAttention Alg. 4: dV from P Z / (1 - p), dP = (dO V^T) Z / (1 - p)
        if (j % kDropoutChunk == 0)  // one chunk of 64 keys at a time: one Philox call per 16 elements
          dropout_factors<V>(vd, {at.b, at.h, at.hk, static_cast<int>(i0 + i), static_cast<int>(k0 + j)},
                             static_cast<int>(std::min<std::int64_t>(kDropoutChunk, ncols - j)), f);
        const vf z = simd::load(f + j % kDropoutChunk);
        dp = dp * z;
        pv = pr * z;
      } else {
        static_assert(!V::Prob::kActive, "a probability hook needs its backward rule here");
      }
      vf g = pr * (dp - di);
      if constexpr (V::Score::kActive) g = g * V::Score::template dscore<VecMath>(simd::load(w.x + i * ld + j), vd);
      simd::store(s + j, pv);
      simd::store(ds + j, g);
    }
  }
}

void probs_and_dscores(const Problem& p, const SeqSpan& sp, ScoreAt at, std::int64_t rows, std::int64_t rows_pad,
                       std::int64_t ncols, std::int64_t ld, const StepTiles& w, const SparseRows* sparse = nullptr,
                       const Range& keys = {}) {
  visit_variant(variant_of(p.variant),
                [&]<class V>() { probs_and_dscores_v<V>(p, sp, at, rows, rows_pad, ncols, ld, w, sparse, keys); });
}

void check_plan(const BackwardPlan& plan) {
  const std::string v = "block_m=" + std::to_string(plan.block_m) + " block_n=" + std::to_string(plan.block_n) +
                        " block_n_dkdv=" + std::to_string(plan.block_n_dkdv);
  require(plan.block_m > 0 && plan.block_m % kRowAlign == 0, "plan", v,
          "block_m must be a positive multiple of " + std::to_string(kRowAlign), "round block_m up");
  require(plan.block_n > 0 && plan.block_n % kPanel == 0, "plan", v,
          "block_n must be a positive multiple of " + std::to_string(kPanel), "round block_n up");
  require(plan.block_n_dkdv > 0 && plan.block_n_dkdv % kKeyAlignBwd == 0, "plan", v,
          "block_n_dkdv must be a positive multiple of " + std::to_string(kKeyAlignBwd), "round block_n_dkdv up");
}

/// Pass 0: D_i = sum_d dO[i, d] * O[i, d] in fp32, for every row of every head.
void compute_di(const Problem& p, const BwdTensors& t, float* dvec, MatmulPath path) {
  const std::int64_t items = p.batch * p.hq, dp = padded_d(p.d);
  // f32 inputs on a bf16 path (Options::fp32_matmul = bf16): dP = dO V^T multiplies dO rounded to bf16, so D_i
  // takes the same rounded dO -- else dP_ij - D_i of a one-hot row would be the rounding of dO, not 0.
  const bool round_do = p.dtype == DType::f32 && path != MatmulPath::fp32;
  const int threads = resolve_threads(p, static_cast<std::size_t>(items));
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> a(dp), o(dp);
#pragma omp for schedule(static)
    for (std::int64_t it = 0; it < items; ++it) {
      const std::int64_t b = it / p.hq, h = it % p.hq;
      const SeqSpan sp = seq_span(p, b);
      const Rows dout = rows_of(p, t.dout, t.sdo, b, sp.q0, h), out = rows_of(p, t.o, t.so, b, sp.q0, h);
      for (std::int64_t i = 0; i < sp.nq; ++i) {
        load_row(dout, i, p.d, dp, 1.f, a.data());
        if (round_do)
          for (std::int64_t d = 0; d < p.d; ++d) a[d] = bf16_to_float(float_to_bf16(a[d]));
        load_row(out, i, p.d, dp, 1.f, o.data());
        // fp32 path: the same rounding as kernel A's dP = dO V^T (one fused multiply-add per d, in order), so
        // that dP_ij - D_i is exactly 0 where O_i = V_j (a one-hot row of P) instead of a rounding residue.
        // The bf16 paths' dP sums pairs on the matrix units in their own order: there the residue is an fp32
        // rounding of dO V^T whatever order D_i takes, far below the bf16 rounding of dS that follows, so D_i
        // is summed in 16 lanes (a fixed order: deterministic) instead of one serial chain of D dependent FMAs.
        float acc = 0.f;
        if (path != MatmulPath::fp32) {
          vf lanes{};
          for (std::int64_t d = 0; d < dp; d += simd::kWidth) lanes += simd::load(a.data() + d) * simd::load(o.data() + d);
          acc = simd::hsum(lanes);
        } else {
          for (std::int64_t d = 0; d < p.d; ++d) {
#ifdef __FMA__
            acc = std::fma(a[d], o[d], acc);
#else
            acc += a[d] * o[d];
#endif
          }
        }
        dvec[di_index(p, b, sp, h, i)] = acc;
      }
    }
  }
}

/// Attention sinks' gradient: dsink_h = -sum over (b, i) of e^(sink_h - LSE_i) D_i (the sink's probability
/// in row i times D_i; the LSE includes the sink), in double, sequences and rows in order; rows with
/// LSE = -inf add 0. The CUDA backward does the same (bwd_sinks_kernel, src/cuda/common/bwd_rows.cuh).
void sinks_gradient(const Problem& p, const BwdTensors& t, const float* dvec) {
  for (std::int64_t h = 0; h < p.hq; ++h) {
    double acc = 0;
    for (std::int64_t b = 0; b < p.batch; ++b) {
      const SeqSpan sp = seq_span(p, b);
      for (std::int64_t i = 0; i < sp.nq; ++i) {
        const float lse = t.lse[row_offset(p, t.slse, b, sp.q0, i, h)];
        if (lse != kNegInf) acc += std::exp(double(t.sinks[h]) - lse) * dvec[di_index(p, b, sp, h, i)];
      }
    }
    t.dsinks[h] = static_cast<float>(-acc);
  }
}

struct KvBlock {
  std::int64_t b, hk, k0, nkeys;
  SeqSpan sp;
  Range rows;  ///< query rows that see the block (the same for every head of the group)
};

/// Pass 1: dK and dV of one key block; mm: the bf16 products (null: the fp32 path).
void dkdv_block(const Problem& p, const BwdTensors& t, const BackwardPlan& plan, const float* dvec,
                const KvBlock& blk, const KvBlockScratch& w, const Bf16Products* mm) {
  const std::int64_t dp = padded_d(p.d), ld = plan.block_n_dkdv, kq = mm != nullptr ? mm->kq(p.d) : 0;
  const std::int64_t ncols = round_up(blk.nkeys, kKeyAlignBwd);
  const Rows k = rows_of(p, t.k, t.sk, blk.b, blk.sp.k0, blk.hk), v = rows_of(p, t.v, t.sv, blk.b, blk.sp.k0, blk.hk);
  if (mm != nullptr) {
    mm->pack_kpanels(from_row(k, blk.k0), blk.nkeys, ncols, p.d, w.kb);
    mm->pack_kpanels(from_row(v, blk.k0), blk.nkeys, ncols, p.d, w.vb);
    if (w.dq != nullptr) mm->pack_pairs(from_row(k, blk.k0), blk.nkeys, ncols, p.d, dp, w.kp, 0);
  } else {
    pack_panels(k, blk.k0, blk.nkeys, ncols, p.d, dp, w.kt);
    pack_panels(v, blk.k0, blk.nkeys, ncols, p.d, dp, w.vt);
    if (w.dq != nullptr) pack_rows(k, blk.k0, blk.nkeys, ncols, p.d, dp, 1.f, w.kr);
  }
  std::memset(w.dk, 0, sizeof(float) * ncols * dp);
  std::memset(w.dv, 0, sizeof(float) * ncols * dp);
  const Range keys{blk.k0, blk.k0 + blk.nkeys - 1};
  for (std::int64_t h = blk.hk * p.group(); h < (blk.hk + 1) * p.group(); ++h) {
    // Block-sparse: the query rows that list this key block (per head), else the band's rows.
    const std::vector<Range> row_ranges = p.sparse.on ? sparse_rows_of_block(p, blk.b, h, blk.sp, blk.k0 / p.sparse.block_kv)
                                                      : std::vector<Range>{blk.rows};
    for (const Range& rr : row_ranges)
    for (std::int64_t i0 = rr.lo; i0 <= rr.hi; i0 += plan.block_m) {
      const std::int64_t rows = std::min<std::int64_t>(plan.block_m, rr.hi + 1 - i0);
      const std::int64_t rows_pad = round_up(rows, mm != nullptr ? kBf16RowsDkdv : kRowAlign);
      const std::optional<SparseRows> sparse =
          p.sparse.on ? std::optional<SparseRows>(std::in_place, p, blk.b, h, blk.sp, i0, rows) : std::nullopt;
      StepTiles step = w.step;
      float* dq = w.dq != nullptr ? w.dq + ((h - blk.hk * p.group()) * w.dq_rows + i0) * dp : nullptr;
      if (w.qall != nullptr) {  // fused dQ: this tile's rows of the item's packed Q and dO (real rows past `rows`
        // get P = dS = 0 below, as zero rows would)
        const std::int64_t off = ((h - blk.hk * p.group()) * w.dq_rows + i0) * dp;
        step.q = w.qall + off;
        step.dout = w.dout_all + off;
      }
      load_step_rows(p, t, dvec, blk.b, blk.sp, h, i0, rows, rows_pad, step, mm, w.qall == nullptr);
      const Rows q = rows_of(p, t.q, t.sq, blk.b, blk.sp.q0, h), dout = rows_of(p, t.dout, t.sdo, blk.b, blk.sp.q0, h);
      if (mm != nullptr) {
        mm->pack_pairs(from_row(q, i0), rows, rows_pad, p.d, dp, w.qp, w.pair_plane);
        mm->pack_pairs(from_row(dout, i0), rows, rows_pad, p.d, dp, w.dop, w.pair_plane);
        mm->qk(step.qb, rows_pad, kq, w.kb, ncols, p.scale, step.s, ld);  // S = scale (Q K^T)
        mm->qk(step.dob, rows_pad, kq, w.vb, ncols, 1.f, step.ds, ld);    // dP = dO V^T
      } else {
        gemm_panels_rows(step.q, dp, rows_pad, dp, w.kt, ncols / kPanel, step.s, ld);    // S = (scale Q) K^T
        gemm_panels_rows(step.dout, dp, rows_pad, dp, w.vt, ncols / kPanel, step.ds, ld);  // dP = dO V^T
      }
      probs_and_dscores(p, blk.sp, score_at(blk.b, h, blk.hk, i0, blk.k0, blk.sp), rows, rows_pad, ncols, ld,
                        step, sparse ? &*sparse : nullptr, keys);
      if (mm != nullptr) {  // P^T and dS^T in bf16 pieces (keys x rows), the A operands
        const int pieces = mm->split.pieces;
        bf16_transpose(step.s, rows_pad, ncols, ld, w.pt, rows_pad, pieces, w.t_plane);
        bf16_transpose(step.ds, rows_pad, ncols, ld, w.dst, rows_pad, pieces, w.t_plane);
        mm->pv_split(w.pt, w.t_plane, rows_pad, ncols, rows_pad, w.dop, w.pair_plane, dp, w.dv, dp);  // dV += P^T dO
        mm->pv_split(w.dst, w.t_plane, rows_pad, ncols, rows_pad, w.qp, w.pair_plane, dp, w.dk, dp);  // dK += dS^T Q
        if (dq != nullptr) {  // dQ += dS K (fuses_dq: one piece), dS in bf16 as pass 2 rounds it
          mm->to_pieces(step.ds, rows_pad, ncols, ld, w.dsb, 0);
          mm->pv_split(w.dsb, 0, ld, rows_pad, ncols, w.kp, 0, dp, dq, dp);
        }
      } else {
        gemm_acc(step.s, ld, true, ncols, rows_pad, step.dout, dp, dp, w.dv, dp);   // dV += P^T dO
        gemm_acc(step.ds, ld, true, ncols, rows_pad, step.q, dp, dp, w.dk, dp);     // dK += dS^T (scale Q)
        if (dq != nullptr) gemm_acc(step.ds, ld, false, rows_pad, ncols, w.kr, dp, dp, dq, dp);  // dQ += dS K
      }
    }
  }
  store_rows(t.dk, t.grad_dtype, row_offset(p, t.sdk, blk.b, blk.sp.k0, 0, blk.hk), t.sdk.n, blk.k0, blk.nkeys, w.dk,
             dp, p.d, mm != nullptr ? p.scale : 1.f);
  store_rows(t.dv, t.grad_dtype, row_offset(p, t.sdv, blk.b, blk.sp.k0, 0, blk.hk), t.sdv.n, blk.k0, blk.nkeys, w.dv,
             dp, p.d, 1.f);
}

struct QTile {
  std::int64_t b, h, i0, rows;
  SeqSpan sp;
};

/// Where pass 2 puts dS for the bias's gradient. Pass 2 visits every visible (b, h, i, j) exactly once, so plain
/// stores fill either target (zeroed first: the invisible elements stay 0): a bias of full (B, Hq, Nq) gets them in
/// dbias itself (`direct`, in its dtype); a broadcast one in `data`, fp32 (B, Hq, Nq, Nk) contiguous (Nq, Nk: the
/// longest sequence for varlen; 4 B Hq Nq Nk bytes), which reduce_dbias then sums in a fixed order.
struct DsBuffer {
  float* data = nullptr;
  const BiasGrad* direct = nullptr;
  [[nodiscard]] std::int64_t at(const Problem& p, std::int64_t b, std::int64_t h, std::int64_t i) const {
    return ((b * p.hq + h) * p.nq + i) * p.nk;
  }
};

/// dbias from the dS buffer: each element sums the (b, h, i) it stands for (every b where the bias's batch
/// dim is 1, likewise h and i) in increasing order, in double, stored in dbias's dtype. Deterministic.
void reduce_dbias(const Problem& p, const BiasGrad& g, const DsBuffer& ds) {
  const std::int64_t nb = g.nb == 1 ? p.batch : 1, nh = g.nh == 1 ? p.hq : 1, ni = g.nq == 1 ? p.nq : 1;
  const std::int64_t items = g.nb * g.nh * g.nq;
  const int threads = resolve_threads(p, static_cast<std::size_t>(items));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t it = 0; it < items; ++it) {
    const std::int64_t ob = it / (g.nh * g.nq), oh = it / g.nq % g.nh, oi = it % g.nq;
    for (std::int64_t j = 0; j < p.nk; ++j) {
      double acc = 0;
      for (std::int64_t b = 0; b < nb; ++b)
        for (std::int64_t h = 0; h < nh; ++h)
          for (std::int64_t i = 0; i < ni; ++i)
            acc += ds.data[ds.at(p, g.nb == 1 ? b : ob, g.nh == 1 ? h : oh, g.nq == 1 ? i : oi) + j];
      store_double(g.data, g.dtype, ob * g.sb + oh * g.sh + oi * g.si + j, acc);
    }
  }
}

/// Pass 2: dQ of one query tile (w.kt, w.vt, w.k, or on the bf16 paths w.kb, w.vb, w.kp, hold its (b, kv head));
/// with ds.data, its dS into the buffer; mm: the bf16 products (null: the fp32 path).
void dq_tile(const Problem& p, const BwdTensors& t, const BackwardPlan& plan, const float* dvec, const QTile& tile,
             const QTileScratch& w, const DsBuffer& dsb, const Bf16Products* mm) {
  const std::int64_t dp = padded_d(p.d), ld = plan.block_n, kq = mm != nullptr ? mm->kq(p.d) : 0;
  const std::int64_t rows_pad = round_up(tile.rows, mm != nullptr ? kAmxRows : kRowAlign);
  load_step_rows(p, t, dvec, tile.b, tile.sp, tile.h, tile.i0, tile.rows, rows_pad, w.step, mm);
  std::memset(w.dq, 0, sizeof(float) * rows_pad * dp);
  // Block-sparse (src/cpu/sparse_tile.h): the listed key blocks' intervals only, masked element-wise.
  const std::optional<SparseRows> sparse =
      p.sparse.on ? std::optional<SparseRows>(std::in_place, p, tile.b, tile.h, tile.sp, tile.i0, tile.rows) : std::nullopt;
  auto visit_keys = [&](const Range& keys) {
    const std::int64_t k_end = round_up(keys.hi + 1, kPanel);
    for (std::int64_t k0 = keys.lo / kPanel * kPanel; k0 < k_end; k0 += ld) {
      const std::int64_t ncols = std::min(ld, k_end - k0);
      if (mm != nullptr) {
        mm->qk(w.step.qb, rows_pad, kq, w.kb + k0 * kq, ncols, p.scale, w.step.s, ld);
        mm->qk(w.step.dob, rows_pad, kq, w.vb + k0 * kq, ncols, 1.f, w.step.ds, ld);
      } else {
        gemm_panels_rows(w.step.q, dp, rows_pad, dp, w.kt + k0 * dp, ncols / kPanel, w.step.s, ld);
        gemm_panels_rows(w.step.dout, dp, rows_pad, dp, w.vt + k0 * dp, ncols / kPanel, w.step.ds, ld);
      }
      probs_and_dscores(p, tile.sp, score_at(tile.b, tile.h, tile.h / p.group(), tile.i0, k0, tile.sp), tile.rows,
                        rows_pad, ncols, ld, w.step, sparse ? &*sparse : nullptr, keys);
      const std::int64_t n = std::min(ncols, tile.sp.nk - k0);  // dbias = dS (the logit's gradient, before the scale)
      if (dsb.data != nullptr) {
        for (std::int64_t i = 0; i < tile.rows && n > 0; ++i)
          std::memcpy(dsb.data + dsb.at(p, tile.b, tile.h, tile.i0 + i) + k0, w.step.ds + i * ld, sizeof(float) * n);
      } else if (dsb.direct != nullptr) {
        const BiasGrad& g = *dsb.direct;
        for (std::int64_t i = 0; i < tile.rows; ++i) {
          const std::int64_t row = tile.b * g.sb + tile.h * g.sh + (tile.i0 + i) * g.si + k0;
          for (std::int64_t j = 0; j < n; ++j) store_double(g.data, g.dtype, row + j, w.step.ds[i * ld + j]);
        }
      }
      if (mm != nullptr) {  // dQ += dS K, dS in bf16 pieces
        mm->to_pieces(w.step.ds, rows_pad, ncols, ld, w.dsb, w.ds_plane);
        mm->pv_split(w.dsb, w.ds_plane, ld, rows_pad, ncols, w.kp + k0 * dp, w.kp_plane, dp, w.dq, dp);
      } else {
        gemm_acc(w.step.ds, ld, false, rows_pad, ncols, w.k + k0 * dp, dp, dp, w.dq, dp);  // dQ += dS K
      }
    }
  };
  if (sparse) {
    for (const Range& keys : sparse->intervals()) visit_keys(keys);
  } else {
    const Range keys = tile_keys(p.mask, tile.sp, tile.i0, tile.rows);
    if (!keys.empty()) visit_keys(keys);
  }
  store_rows(t.dq, t.grad_dtype, row_offset(p, t.sdq, tile.b, tile.sp.q0, 0, tile.h), t.sdq.n, tile.i0, tile.rows, w.dq,
             dp, p.d, p.scale);
}

}  // namespace

std::size_t backward_workspace_bytes(const Problem& p) {
  const BackwardPlan plan = plan_backward(p);
  const MatmulPath path = backward_matmul(p);
  const SplitPolicy split = path != MatmulPath::fp32 ? split_policy(p) : kSplitBf16;
  std::size_t blocks = 0, qtiles = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const SeqSpan sp = seq_span(p, b);
    blocks += static_cast<std::size_t>((sp.nk + plan.block_n_dkdv - 1) / plan.block_n_dkdv * p.hkv);
    qtiles += static_cast<std::size_t>((sp.nq + plan.block_m - 1) / plan.block_m * p.hq);
  }
  const int threads = resolve_threads(p, std::max(blocks, qtiles));
  return (thread_floats(p, plan, path, split, fuses_dq(p, path, split, threads)) * static_cast<std::size_t>(threads) +
          di_floats(p)) * sizeof(float);
}

Report run_backward(const Problem& p, const BwdTensors& t, const BackwardPlan& plan) {
  check_plan(plan);
  const MatmulPath path = backward_matmul(p);  // bf16, f16: AMX, AVX512-BF16 or fp32 products (amx.h)
  // f16: the forward's exact bf16 pieces (SplitPolicy), so S is recomputed from the same products, summed in the
  // same order, as the forward's LSE.
  const SplitPolicy split = path != MatmulPath::fp32 ? split_policy(p) : kSplitBf16;
  const Bf16Products bf16{path == MatmulPath::amx, split};
  const Bf16Products* mm = path != MatmulPath::fp32 ? &bf16 : nullptr;
  std::vector<float> dvec(di_floats(p));
  compute_di(p, t, dvec.data(), path);
  if (t.dsinks != nullptr) sinks_gradient(p, t, dvec.data());

  // Work items of both passes, with costs (visible rows x keys) for the static split.
  std::vector<KvBlock> blocks;
  std::vector<double> block_cost;
  struct KvItem {
    std::int64_t b, hk;
    std::size_t first;  ///< its first block in `blocks` (the next item's first ends it)
    SeqSpan sp;
  };
  std::vector<KvItem> items;
  std::vector<QTile> qtiles;
  std::vector<double> qtile_cost;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const SeqSpan sp = seq_span(p, b);
    // Block-sparse: chunks never straddle a key block (each item walks one block's query lists).
    const std::int64_t kseg = p.sparse.on ? p.sparse.block_kv : std::max<std::int64_t>(sp.nk, 1);
    const std::int64_t qseg = p.sparse.on ? p.sparse.block_q : std::max<std::int64_t>(sp.nq, 1);
    for (std::int64_t hk = 0; hk < p.hkv; ++hk) {
      items.push_back({b, hk, blocks.size(), sp});  // the fused dQ's items, one per (b, kv head)
      for (std::int64_t s0 = 0; s0 < sp.nk; s0 += kseg)
      for (std::int64_t k0 = s0; k0 < std::min(sp.nk, s0 + kseg); k0 += plan.block_n_dkdv) {
        const std::int64_t nkeys = std::min<std::int64_t>(plan.block_n_dkdv, std::min(sp.nk, s0 + kseg) - k0);
        const Range rows = block_rows(p.mask, sp, k0, k0 + nkeys - 1);
        blocks.push_back({b, hk, k0, nkeys, sp, rows});
        block_cost.push_back(static_cast<double>(p.group()) * static_cast<double>(round_up(nkeys, kKeyAlignBwd)) *
                             static_cast<double>((rows.empty() ? 0 : rows.hi - rows.lo + 1) + plan.block_m));
      }
    }
    for (std::int64_t h = 0; h < p.hq; ++h)
      for (std::int64_t s0 = 0; s0 < sp.nq; s0 += qseg)
      for (std::int64_t i0 = s0; i0 < std::min(sp.nq, s0 + qseg); i0 += plan.block_m) {
        const std::int64_t rows = std::min<std::int64_t>(plan.block_m, std::min(sp.nq, s0 + qseg) - i0);
        const Range keys = tile_keys(p.mask, sp, i0, rows);
        qtiles.push_back({b, h, i0, rows, sp});
        qtile_cost.push_back(static_cast<double>(round_up(rows, kRowAlign)) *
                             static_cast<double>((keys.empty() ? 0 : keys.hi - keys.lo + 1) + 2 * kPanel));
      }
  }
  const std::vector<double> block_prefix = prefix_sums(block_cost), qtile_prefix = prefix_sums(qtile_cost);
  const int threads = resolve_threads(p, std::max(blocks.size(), qtiles.size()));
  std::vector<Scratch> scratch;
  scratch.reserve(threads);
  const bool fused = fuses_dq(p, path, split, threads);
  for (int i = 0; i < threads; ++i) scratch.emplace_back(thread_floats(p, plan, path, split, fused));
  // Fused dQ: one item per (batch, kv head), its key blocks (consecutive in `blocks`, none for Nk = 0) in order;
  // every item stores its heads' dQ rows (zeros where no key is seen).
  std::vector<double> item_cost(items.size(), 0.0);
  for (std::size_t it = 0; it < items.size(); ++it) {
    const std::size_t end = it + 1 < items.size() ? items[it + 1].first : blocks.size();
    item_cost[it] = static_cast<double>(p.group() * items[it].sp.nq);  // the dQ store
    for (std::size_t i = items[it].first; i < end; ++i) item_cost[it] += block_cost[i];
  }
  const std::vector<double> item_prefix = prefix_sums(item_cost);
  const std::int64_t dp = padded_d(p.d);
  // dbias (DsBuffer): straight into a full dbias, else dS in fp32 (4 B Hq Nq Nk bytes) and a fixed-order reduction.
  std::vector<float> ds_store;
  DsBuffer dsb;
  const BiasGrad& g = t.dbias;
  if (g.data != nullptr && p.variant.bias != nullptr) {
    if (g.nb == p.batch && g.nh == p.hq && g.nq == p.nq) {
      for (std::int64_t b = 0; b < g.nb; ++b)
        for (std::int64_t h = 0; h < g.nh; ++h)
          for (std::int64_t i = 0; i < g.nq; ++i)
            for (std::int64_t j = 0; j < g.nk; ++j) store_double(g.data, g.dtype, b * g.sb + h * g.sh + i * g.si + j, 0.0);
      dsb.direct = &g;
    } else {
      ds_store.assign(static_cast<std::size_t>(p.batch * p.hq * p.nq * p.nk), 0.f);
      dsb.data = ds_store.data();
    }
  }

#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
    if (path == MatmulPath::amx) amx_begin();  // this thread's tile configuration
    {
      Carver c(scratch[tid].data());
      const KvBlockScratch w = carve_pass1(c, p, plan, path, split, fused);
      if (fused) {
        const ItemRange mine = thread_items(item_prefix, tid, nt);
        for (std::size_t it = mine.begin; it < mine.end; ++it) {
          const KvItem& item = items[it];
          const std::size_t end = it + 1 < items.size() ? items[it + 1].first : blocks.size();
          std::memset(w.dq, 0, sizeof(float) * static_cast<std::size_t>(p.group() * w.dq_rows * dp));
          for (std::int64_t g = 0; g < p.group() && w.qall != nullptr; ++g) {  // fp32: Q and dO of its heads, once
            const std::int64_t h = item.hk * p.group() + g;
            pack_rows(rows_of(p, t.q, t.sq, item.b, item.sp.q0, h), 0, item.sp.nq, w.dq_rows, p.d, dp, p.scale,
                      w.qall + g * w.dq_rows * dp);
            pack_rows(rows_of(p, t.dout, t.sdo, item.b, item.sp.q0, h), 0, item.sp.nq, w.dq_rows, p.d, dp, 1.f,
                      w.dout_all + g * w.dq_rows * dp);
          }
          for (std::size_t i = item.first; i < end; ++i) dkdv_block(p, t, plan, dvec.data(), blocks[i], w, mm);
          for (std::int64_t g = 0; g < p.group(); ++g) {
            const std::int64_t h = item.hk * p.group() + g;
            store_rows(t.dq, t.grad_dtype, row_offset(p, t.sdq, item.b, item.sp.q0, 0, h), t.sdq.n, 0, item.sp.nq,
                       w.dq + g * w.dq_rows * dp, dp, p.d, p.scale);
          }
        }
      } else {
        const ItemRange mine = thread_items(block_prefix, tid, nt);
        for (std::size_t i = mine.begin; i < mine.end; ++i) dkdv_block(p, t, plan, dvec.data(), blocks[i], w, mm);
      }
    }
    if (!fused) {
      Carver c(scratch[tid].data());
      const QTileScratch w = carve_pass2(c, p, plan, path, split);
      const ItemRange mine = thread_items(qtile_prefix, tid, nt);
      std::int64_t packed_b = -1, packed_hk = -1;
      for (std::size_t i = mine.begin; i < mine.end; ++i) {
        const QTile& tile = qtiles[i];
        const std::int64_t hk = tile.h / p.group();
        if (tile.b != packed_b || hk != packed_hk) {
          const Rows k = rows_of(p, t.k, t.sk, tile.b, tile.sp.k0, hk);
          const Rows v = rows_of(p, t.v, t.sv, tile.b, tile.sp.k0, hk);
          const std::int64_t nk_pad = round_up(tile.sp.nk, kPanel);
          if (mm != nullptr) {
            mm->pack_kpanels(k, tile.sp.nk, nk_pad, p.d, w.kb);
            mm->pack_kpanels(v, tile.sp.nk, nk_pad, p.d, w.vb);
            mm->pack_pairs(k, tile.sp.nk, nk_pad, p.d, dp, w.kp, w.kp_plane);
          } else {
            pack_panels(k, 0, tile.sp.nk, nk_pad, p.d, dp, w.kt);
            pack_panels(v, 0, tile.sp.nk, nk_pad, p.d, dp, w.vt);
            pack_rows(k, 0, tile.sp.nk, nk_pad, p.d, dp, 1.f, w.k);
          }
          packed_b = tile.b;
          packed_hk = hk;
        }
        dq_tile(p, t, plan, dvec.data(), tile, w, dsb, mm);
      }
    }
    if (path == MatmulPath::amx) amx_end();
  }

  if (dsb.data != nullptr) reduce_dbias(p, t.dbias, dsb);  // (a bias without elements has no gradient to write)

  Report r;
  r.backend = "cpu";
  r.dataflow = Dataflow::flash;
  r.block_m = plan.block_m;
  r.block_n = plan.block_n;
  r.kernel = "cpu_flash_bwd_" + std::string(name(p.dtype)) + "_d" + std::to_string(p.d) + "_m" +
             std::to_string(plan.block_m) + "_n" + std::to_string(plan.block_n) + "_kv" +
             std::to_string(plan.block_n_dkdv) + (fused ? "_fdq" : "") +  // dQ in pass 1 (fuses_dq)
             matmul_suffix(path) +  // the products' path, last (src/cpu/amx/amx.h: names end in it)
             split.suffix;          // f16: "_split2"
  return r;
}

Report backward(const Problem& p, const BwdTensors& t) { return run_backward(p, t, plan_backward(p)); }

}  // namespace flatattn::cpu
