// One row slab of the bf16 forward tiles (forward_tile.h, bf16_slab): S = Q K^T on the matrix units, the
// score hooks and the mask, the fused softmax step (src/cpu/amx/softmax.cc) and O += P V, for at most
// kAmxSlab rows, so the slab's fp32 logits and bf16 P stay in L1 between the four steps.
#include <algorithm>

#include "src/cpu/amx/amx.h"
#include "src/cpu/forward_tile.h"
#include "src/cpu/gemm.h"
#include "src/cpu/pack.h"
#include "src/cpu/score.h"
#include "src/cpu/tile.h"

namespace flatattn::cpu {

bool bf16_slabs(const Problem& p) { return !transforms_probs(p) && !p.sparse.on; }

void bf16_qk(const ForwardScratch& w, std::int64_t r0, std::int64_t rows, std::int64_t k0, std::int64_t ncols,
             float scale, float* s, std::int64_t lds) {
  const std::uint16_t* q = w.qb + r0 * w.kq;
  const std::uint16_t* kb = w.kb + k0 * w.kq;
  if (w.dpbf16) {
    dpbf16_qk(q, rows, w.kq, kb, ncols, scale, s, lds);
  } else {
    amx_qk(q, rows, w.kq, kb, ncols, scale, s, lds);
  }
}

void bf16_pv(const ForwardScratch& w, const std::uint16_t* pb, std::int64_t ldp, std::int64_t rows, std::int64_t k0,
             std::int64_t ncols, std::int64_t dp, float* o, std::int64_t ldo) {
  int a[9], b[9];
  const int n = w.split.pieces == 1 ? 1 : split_pairs_pv(w.split, a, b);
  if (n == 1) a[0] = b[0] = 0;
  for (int t = 0; t < n; ++t) {  // smallest products first
    const std::uint16_t* pt = pb + a[t] * w.pb_plane;
    const std::uint16_t* vt = w.vb + b[t] * w.vb_plane + k0 * dp;
    if (w.dpbf16) {
      dpbf16_pv(pt, ldp, rows, ncols, vt, dp, o, ldo);
    } else {
      amx_pv(pt, ldp, rows, ncols, vt, dp, o, ldo);
    }
  }
}

void bf16_pack_q(const Problem& p, const Rows& q, const RowTile& tile, std::int64_t rows_pad, const ForwardScratch& w) {
  if (w.split.pieces > 1) {
    pack_q_split(q, tile.i0, tile.rows, rows_pad, p.d, amx_kd(p.d), w.split, w.qb);
  } else {
    pack_q_bf16(q, tile.i0, tile.rows, rows_pad, p.d, amx_kd(p.d), w.qb);
  }
}

void bf16_slab(const Problem& p, const RowTile& tile, const ForwardScratch& w, std::int64_t r0, std::int64_t rs,
               std::int64_t k0, std::int64_t ncols) {
  const std::int64_t dp = padded_d(p.d), lds = ncols;
  // Plain logits: the scale is applied inside the softmax step (one FMA with log2 e); score hooks see the
  // scaled logits, as on every other path.
  const bool fused = !transforms_scores(p) && p.scale > 0.f;
  bf16_qk(w, r0, rs, k0, ncols, fused ? 1.f : p.scale, w.s, lds);
  if (!fused) apply_score(p, score_at(tile.b, tile.h, tile.h / p.group(), tile.i0 + r0, k0, tile.sp), w.s, rs, ncols, lds, nullptr);
  const std::int64_t real = std::clamp<std::int64_t>(tile.rows - r0, 0, rs);
  mask_block(p.mask, tile.sp, tile.i0 + r0, real, k0, ncols, w.s, lds);
  float* o = w.o + r0 * dp;
  bf16_softmax_step(w.s, rs, ncols, lds, fused ? p.scale : 1.f, w.m + r0, w.l + r0, o, dp, dp, w.pb, lds,
                    w.split.pieces, w.pb_plane);
  bf16_pv(w, w.pb, lds, rs, k0, ncols, dp, o, dp);
}

Range bf16_slab_keys(const Problem& p, const RowTile& tile, std::int64_t r0, std::int64_t rs, std::int64_t k0,
                     std::int64_t k1) {
  const std::int64_t real = std::min<std::int64_t>(rs, tile.rows - r0);
  if (real <= 0) return {};
  const Range keys = tile_keys(p.mask, tile.sp, tile.i0 + r0, real);
  if (keys.empty()) return {};
  const std::int64_t lo = std::max(k0, keys.lo / kPanel * kPanel);
  const std::int64_t hi = std::min(k1, round_up(keys.hi + 1, kPanel)) - 1;
  return hi < lo ? Range{} : Range{lo, hi};
}

}  // namespace flatattn::cpu
