// Block-sparse attention on the device (issue 16; src/core/sparse.h, docs/sparse.md): the key-block
// iterator with holes of a forward CTA and the element rule of partial blocks on accumulator fragments.
// A CTA's query rows lie in one query block of the lists (block_q is a multiple of the kernel's BlockM,
// checked at launch); each listed key block of block_kv keys is block_kv / BlockN kernel key blocks.
#pragma once

#include "src/core/sparse.h"
#include "src/cuda/common/mask.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/score.cuh"

namespace flatattn::cuda {

/// One kernel key block of a CTA's list: its index, whether its list block is partial (element rule) and
/// the partial block's slot in the kv row (the bits' block is bit_offsets + slot), and its list block.
struct SparseStep {
  int nb = 0;
  bool partial = false;
  int slot = 0;
  int c = 0;
};

/// The listed key blocks of query block r of (sequence b, query head h): the full blocks, then the partial
/// ones, each split into kernel blocks of BlockN keys; blocks at or past the sequence's nk (or negative
/// indices) are skipped.
/// A null spec (the dense kernel) gives an empty list.
template <int BlockN>
struct SparseKeyBlocks {
  const SparseSpec* s;
  int b, h, r, nk;
  int nfull = 0, total = 0, per = 1;

  FLATATTN_DEVICE SparseKeyBlocks(const SparseSpec* s_, int b_, int h_, int r_, int nk_)
      : s(s_), b(b_), h(h_), r(r_), nk(nk_) {
    if (s == nullptr) return;
    per = s->block_kv / BlockN;
    // Device lists are not validated (docs/sparse.md): counts are clamped to the index rows' width and
    // indices outside the sequence's blocks are skipped (next()), so no read leaves the tensors.
    nfull = clamp(s->kv.full_count(b, h, r), s->kv.full_idx.width);
    total = (nfull + clamp(s->kv.partial_count(b, h, r), s->kv.idx.width)) * per;
  }
  FLATATTN_DEVICE static int clamp(int count, std::int64_t width) {
    return count < 0 ? 0 : (count > width ? static_cast<int>(width) : count);
  }
  /// Step `it` (0 <= it < total).
  FLATATTN_DEVICE SparseStep at(int it) const {
    SparseStep st;
    const int l = it / per, sub = it - l * per;
    st.partial = l >= nfull;
    st.slot = st.partial ? l - nfull : 0;
    st.c = st.partial ? s->kv.idx.at(b, h, r, st.slot) : s->kv.full_idx.at(b, h, r, l);
    st.nb = st.c * per + sub;
    return st;
  }
  /// The first step at or after `it` whose kernel block holds a key of the sequence (total: none).
  FLATATTN_DEVICE int next(int it) const {
    const int seq_blocks = (nk + s->block_kv - 1) / s->block_kv;  // c below it: no overflow in nb * BlockN
    for (; it < total; ++it) {
      const SparseStep st = at(it);
      if (st.c >= 0 && st.c < seq_blocks && st.nb * BlockN < nk) break;
    }
    return it;
  }
};

/// The element rule of a partial block on a query-major fragment block (rows row0 + ..., columns col0 + ...
/// in sequence coordinates, for_each_element's layout): -inf where the bits or the local + global rule hide
/// the element. The band rule needs nothing here (apply_score's band mask is the rule).
template <int kMT, int kNT>
FLATATTN_DEVICE void apply_sparse_rule(float (&s)[kMT][kNT][4], const SparseSpec& sp, const FwdParams& p,
                                       const SparseStep& st, int b, int h, int r, int nq, int nk, int row0, int col0) {
  if (sp.rule == SparseRule::bits) {
    const std::int64_t blk = sp.bit_offsets.at(b, h, r) + st.slot;
    const bool inside = blk >= 0 && blk < sp.bit_blocks;  // unvalidated device offsets: outside = all hidden
    const int i0 = r * sp.block_q, j0 = st.c * sp.block_kv;
    for_each_element(s, row0, col0, [&](float& x, int i, int j) {
      if (i < nq && j < nk && (!inside || !sp.bit(blk, i - i0, j - j0))) x = -INFINITY;
    });
  } else if (sp.rule == SparseRule::local_global) {
    MaskSpec m;
    m.bottom_right = p.bottom_right != 0, m.left = p.left, m.right = p.right;
    for_each_element(s, row0, col0, [&](float& x, int i, int j) {
      if (!local_global_visible(sp, m, b, i, j, nq, nk)) x = -INFINITY;
    });
  }
}

}  // namespace flatattn::cuda
