#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "src/cpu/amx/amx.h"
#include "src/cpu/forward_tile.h"
#include "src/cpu/gemm.h"
#include "src/cpu/pack.h"
#include "src/cpu/score.h"
#include "src/cpu/simd.h"
#include "src/cpu/sparse_tile.h"
#include "src/cpu/tile.h"

namespace flatattn::cpu {

namespace {

/// kAmx: the products on AMX tiles (src/cpu/amx/amx.h), else the fp32 micro-kernels (src/cpu/gemm.h).
template <bool kAmx>
void flat_rows(const Problem& p, const FwdTensors& t, const RowTile& tile, const ForwardScratch& w) {
  const std::int64_t dp = padded_d(p.d);
  const std::int64_t rows_pad = round_up(tile.rows, kAmx ? kAmxRows : kRowAlign);
  const Rows q = rows_of(p, t.q, t.sq, tile.b, tile.sp.q0, tile.h);
  if constexpr (kAmx) {
    bf16_pack_q(p, q, tile, rows_pad, w);  // L = scale (Q K^T)
  } else {
    pack_rows_interleaved(q, tile.i0, tile.rows, rows_pad, p.d, dp, p.scale, w.q);  // L = (scale Q) K^T
  }
  std::memset(w.o, 0, sizeof(float) * rows_pad * dp);
  for (std::int64_t i = 0; i < rows_pad; ++i) w.m[i] = kNegInf, w.l[i] = 0.f;

  // Block-sparse (src/cpu/sparse_tile.h): the span of the listed key blocks, the holes masked element-wise
  // (FLAT computes the whole span; the Flash tile skips the holes).
  const std::optional<SparseRows> sparse =
      p.sparse.on ? std::optional<SparseRows>(std::in_place, p, tile.b, tile.h, tile.sp, tile.i0, tile.rows) : std::nullopt;
  const Range keys = sparse ? sparse->span() : tile_keys(p.mask, tile.sp, tile.i0, tile.rows);
  if (kAmx && bf16_slabs(p)) {
    // Row slabs (forward_bf16.cc), each over its own visible keys (causal: fewer for the earlier slabs); one
    // softmax step per row over all its keys is FLAT's exact softmax (no rescale: m and l start at -inf, 0).
    for (std::int64_t r0 = 0; r0 < rows_pad; r0 += kAmxSlab) {
      const std::int64_t rs = std::min<std::int64_t>(kAmxSlab, rows_pad - r0);
      const Range sk = bf16_slab_keys(p, tile, r0, rs, 0, round_up(tile.sp.nk, kPanel));
      if (!sk.empty()) bf16_slab(p, tile, w, r0, rs, sk.lo, sk.hi + 1 - sk.lo);
    }
  } else if (!keys.empty()) {
    // The whole visible logit block, R x ncols, at once (only the key panels some row of the tile sees).
    const std::int64_t k0 = keys.lo / kPanel * kPanel;
    const std::int64_t ncols = round_up(keys.hi + 1, kPanel) - k0;
    // fp32: the columns each row group of kMrA rows needs (up to the last key its rows see, in panels; all of them
    // when block-sparse): QK^T, the softmax and P V stop there (the causal triangle past the diagonal).
    std::int64_t cols_buf[16];
    std::vector<std::int64_t> cols_vec;
    std::int64_t* gcols = cols_buf;
    if constexpr (!kAmx) {
      const std::int64_t groups = rows_pad / kMrA;
      if (groups > 16) cols_vec.resize(groups), gcols = cols_vec.data();
      for (std::int64_t g = 0; g < groups; ++g) {
        std::int64_t last = sparse ? k0 + ncols - 1 : -1;
        for (std::int64_t i = g * kMrA; !sparse && i < std::min<std::int64_t>(tile.rows, (g + 1) * kMrA); ++i) {
          const std::int64_t lo = p.mask.lo(tile.i0 + i, tile.sp.nq, tile.sp.nk);
          const std::int64_t hi = std::min(p.mask.hi(tile.i0 + i, tile.sp.nq, tile.sp.nk), tile.sp.nk - 1);
          if (hi >= lo) last = std::max(last, hi);
        }
        gcols[g] = std::clamp<std::int64_t>(round_up(last + 1 - k0, kPanel), 0, ncols);
      }
    }
    if constexpr (kAmx) {
      bf16_qk(w, 0, rows_pad, k0, ncols, p.scale, w.s, ncols);
    } else {
      gemm_panels_upto(w.q, rows_pad, dp, w.kt + k0 * dp, ncols / kPanel, w.s, ncols, gcols);
    }
    apply_score(p, score_at(tile.b, tile.h, tile.h / p.group(), tile.i0, k0, tile.sp), w.s, rows_pad, ncols, ncols, nullptr);
    if (sparse) {
      sparse->mask(tile.rows, k0, ncols, w.s, ncols, keys);
    } else {
      mask_block(p.mask, tile.sp, tile.i0, tile.rows, k0, ncols, w.s, ncols);
    }
    // Exact full-row softmax: max, then exp and sum in one sweep; the division by the sum is applied to
    // the R x D output in finish_tile (same result as dividing P, Nk/D times fewer divisions).
    for (std::int64_t i = 0; i < rows_pad; ++i) {
      float* row = w.s + i * ncols;
      const std::int64_t n = kAmx ? ncols : gcols[i / kMrA];  // fp32: past it the row is masked, P = 0
      const float m = simd::row_max(row, n);
      w.m[i] = m;
      w.l[i] = simd::exp_shift_sum(row, n, m == kNegInf ? 0.f : m);
    }
    // The probability hook (dropout) after the sums: l and the LSE are those of the undropped P.
    apply_prob(p, score_at(tile.b, tile.h, tile.h / p.group(), tile.i0, k0, tile.sp), w.s, tile.rows, ncols, ncols);
    // Attend: O = P V, output stationary (the O tile is written once).
    if constexpr (kAmx) {
      if (w.split.pieces > 1) {  // f16: P in bf16 pieces (SplitPolicy, amx.h)
        split_to_bf16(w.s, rows_pad, ncols, ncols, w.split, w.pb, w.pb_plane);
      } else if (w.dpbf16) {  // P in bf16, as the GPU kernels' MMA operand
        dpbf16_to_bf16(w.s, rows_pad, ncols, ncols, w.pb);
      } else {
        amx_to_bf16(w.s, rows_pad, ncols, ncols, w.pb);
      }
      bf16_pv(w, w.pb, ncols, rows_pad, k0, ncols, dp, w.o, dp);
    } else {
      gemm_acc_upto(w.s, ncols, rows_pad, ncols, w.v + k0 * dp, dp, dp, w.o, dp, gcols);
    }
  }
  finish_tile(p, t, tile, w);
}

}  // namespace

void flat_tile(const Problem& p, const FwdTensors& t, const RowTile& tile, const ForwardScratch& w) {
  if (w.amx) {
    flat_rows<true>(p, t, tile, w);
  } else {
    flat_rows<false>(p, t, tile, w);
  }
}

}  // namespace flatattn::cpu
