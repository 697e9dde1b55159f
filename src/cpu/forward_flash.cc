#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

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
void flash_rows(const Problem& p, const FwdTensors& t, const ForwardPlan& plan, const RowTile& tile,
                const ForwardScratch& w) {
  const std::int64_t dp = padded_d(p.d);
  const std::int64_t rows_pad = round_up(tile.rows, kAmx ? kAmxRows : kRowAlign);
  const std::int64_t bn = plan.block_n;
  const Rows q = rows_of(p, t.q, t.sq, tile.b, tile.sp.q0, tile.h);
  if constexpr (kAmx) {
    bf16_pack_q(p, q, tile, rows_pad, w);  // S = scale (Q K^T)
  } else {
    pack_rows_interleaved(q, tile.i0, tile.rows, rows_pad, p.d, dp, p.scale, w.q);  // S = (scale Q) K^T
  }
  std::memset(w.o, 0, sizeof(float) * rows_pad * dp);
  for (std::int64_t i = 0; i < rows_pad; ++i) w.m[i] = kNegInf, w.l[i] = 0.f;

  const bool probs = transforms_probs(p);
  const bool slabs = kAmx && bf16_slabs(p);
  // Block-sparse (src/cpu/sparse_tile.h): only the listed key blocks' intervals, masked element-wise.
  const std::optional<SparseRows> sparse =
      p.sparse.on ? std::optional<SparseRows>(std::in_place, p, tile.b, tile.h, tile.sp, tile.i0, tile.rows) : std::nullopt;
  auto visit = [&](std::int64_t k0, std::int64_t ncols, const Range& keys) {
    if constexpr (kAmx) {
      if (slabs) {  // row slabs (forward_bf16.cc); a slab that sees none of these keys is skipped
        for (std::int64_t r0 = 0; r0 < rows_pad; r0 += kAmxSlab) {
          const std::int64_t rs = std::min<std::int64_t>(kAmxSlab, rows_pad - r0);
          const Range sk = bf16_slab_keys(p, tile, r0, rs, k0, k0 + ncols);
          if (!sk.empty()) bf16_slab(p, tile, w, r0, rs, sk.lo, sk.hi + 1 - sk.lo);
        }
        return;
      }
    }
    if constexpr (kAmx) {
      bf16_qk(w, 0, rows_pad, k0, ncols, p.scale, w.s, bn);
    } else {
      gemm_panels(w.q, rows_pad, dp, w.kt + k0 * dp, ncols / kPanel, w.s, bn);
    }
    apply_score(p, score_at(tile.b, tile.h, tile.h / p.group(), tile.i0, k0, tile.sp), w.s, rows_pad, ncols, bn, nullptr);
    if (sparse) {
      sparse->mask(tile.rows, k0, ncols, w.s, bn, keys);
    } else {
      mask_block(p.mask, tile.sp, tile.i0, tile.rows, k0, ncols, w.s, bn);
    }
    for (std::int64_t i = 0; i < rows_pad; ++i) {
      float* row = w.s + i * bn;
      const float m_new = std::max(w.m[i], simd::row_max(row, ncols));
      const float shift = m_new == kNegInf ? 0.f : m_new;  // all masked so far: P = e^-inf = 0
      const float alpha = std::exp(w.m[i] - shift);        // m = -inf gives 0: nothing to rescale
      w.l[i] = w.l[i] * alpha + simd::exp_shift_sum(row, ncols, shift);
      w.m[i] = m_new;
      if (alpha != 1.f) simd::scale_row(w.o + i * dp, dp, alpha);
    }
    // The probability hook (dropout) after the sum: l and the LSE are those of the undropped P.
    if (probs) apply_prob(p, score_at(tile.b, tile.h, tile.h / p.group(), tile.i0, k0, tile.sp), w.s, tile.rows, ncols, bn);
    if constexpr (kAmx) {
      if (w.split.pieces > 1) {  // f16: P in bf16 pieces (SplitPolicy, amx.h)
        split_to_bf16(w.s, rows_pad, ncols, bn, w.split, w.pb, w.pb_plane);
      } else if (w.dpbf16) {  // P in bf16, as the GPU kernels' MMA operand
        dpbf16_to_bf16(w.s, rows_pad, ncols, bn, w.pb);
      } else {
        amx_to_bf16(w.s, rows_pad, ncols, bn, w.pb);
      }
      bf16_pv(w, w.pb, bn, rows_pad, k0, ncols, dp, w.o, dp);
    } else {
      gemm_acc(w.s, bn, false, rows_pad, ncols, w.v + k0 * dp, dp, dp, w.o, dp);
    }
  };
  // Visits the keys [lo, hi] in steps of block_n from a panel boundary (packed K/V are zero beyond Nk).
  auto visit_keys = [&](const Range& keys) {
    const std::int64_t k_end = round_up(keys.hi + 1, kPanel);
    for (std::int64_t k0 = keys.lo / kPanel * kPanel; k0 < k_end; k0 += bn) visit(k0, std::min(bn, k_end - k0), keys);
  };
  if (sparse) {
    for (const Range& keys : sparse->intervals()) visit_keys(keys);
  } else {
    const Range keys = tile_keys(p.mask, tile.sp, tile.i0, tile.rows);
    if (!keys.empty()) visit_keys(keys);
  }
  finish_tile(p, t, tile, w);
}

}  // namespace

void flash_tile(const Problem& p, const FwdTensors& t, const ForwardPlan& plan, const RowTile& tile,
                const ForwardScratch& w) {
  if (w.amx) {
    flash_rows<true>(p, t, plan, tile, w);
  } else {
    flash_rows<false>(p, t, plan, tile, w);
  }
}

}  // namespace flatattn::cpu
