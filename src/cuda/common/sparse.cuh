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
  int entries = 0;  ///< listed blocks (full + partial): total / per

  FLATATTN_DEVICE SparseKeyBlocks(const SparseSpec* s_, int b_, int h_, int r_, int nk_)
      : s(s_), b(b_), h(h_), r(r_), nk(nk_) {
    if (s == nullptr) return;
    per = s->block_kv / BlockN;
    // Device lists are not validated (docs/sparse.md): counts are clamped to the index rows' width and
    // indices outside the sequence's blocks are skipped (next()), so no read leaves the tensors.
    nfull = clamp(s->kv.full_count(b, h, r), s->kv.full_idx.width);
    entries = nfull + clamp(s->kv.partial_count(b, h, r), s->kv.idx.width);
    total = entries * per;
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
  /// A position of take(): list entry l (the full blocks first), kernel block sub of it, its list block c.
  struct Cursor {
    int l = 0, sub = 0, c = 0;
  };
  /// The steps of next() / at() in order, incrementally (the sm90 forward's look-ahead): the step at cursor w
  /// (nb = -1: none left), w moved past it. An entry's index is read once for its per kernel blocks, with no
  /// division per step; seq_blocks = ceil(nk / block_kv) (entries at or past it are skipped, as in next()).
  FLATATTN_DEVICE SparseStep take(Cursor& w, int seq_blocks) const {
    SparseStep st;
    st.nb = -1;
    while (w.l < entries) {
      const bool partial = w.l >= nfull;
      if (w.sub == 0) {
        w.c = partial ? s->kv.idx.at(b, h, r, w.l - nfull) : s->kv.full_idx.at(b, h, r, w.l);
        if (w.c < 0 || w.c >= seq_blocks) {
          ++w.l;
          continue;
        }
      }
      const int nb = w.c * per + w.sub;
      if (nb * BlockN >= nk) {  // this and the entry's later kernel blocks are past the sequence's keys
        w.sub = 0, ++w.l;
        continue;
      }
      st.nb = nb, st.partial = partial, st.slot = partial ? w.l - nfull : 0, st.c = w.c;
      if (++w.sub == per) w.sub = 0, ++w.l;
      return st;
    }
    return st;
  }
};

/// The element rule of a partial block on a fragment block (rows row0 + ..., columns col0 + ... in sequence
/// coordinates, for_each_element's layout; L: rows are queries, or keys as in the sm90 backward's S^T): -inf
/// where the bits or the local + global rule hide the element. The band rule needs nothing here
/// (apply_score's band mask is the rule).
template <Layout L = Layout::query_major, int kMT, int kNT>
FLATATTN_DEVICE void apply_sparse_rule(float (&s)[kMT][kNT][4], const SparseSpec& sp, const FwdParams& p,
                                       const SparseStep& st, int b, int h, int r, int nq, int nk, int row0, int col0) {
  constexpr bool kQ = L == Layout::query_major;
  if (sp.rule == SparseRule::bits) {
    const std::int64_t blk = sp.bit_offsets.at(b, h, r) + st.slot;
    const bool inside = blk >= 0 && blk < sp.bit_blocks;  // unvalidated device offsets: outside = all hidden
    const int i0 = r * sp.block_q, j0 = st.c * sp.block_kv;
    for_each_element(s, row0, col0, [&](float& x, int u, int v) {
      const int i = kQ ? u : v, j = kQ ? v : u;
      if (i < nq && j < nk && (!inside || !sp.bit(blk, i - i0, j - j0))) x = -INFINITY;
    });
  } else if (sp.rule == SparseRule::local_global) {
    // local_global_visible per element, with is_global asked only against the global positions inside this
    // thread's rows (columns) of the block: usually none or one (GlobalSpan), where two binary searches over all
    // positions per element made a partial block ~20x its products (H100, bench/results/h100-stop32-9467cde.md).
    MaskSpec m;
    m.bottom_right = p.bottom_right != 0, m.left = p.left, m.right = p.right;
    // for_each_element's rows row0 .. row0 + 16 (kMT - 1) + 8, columns col0 .. col0 + 8 (kNT - 1) + 1
    const GlobalSpan rows = sp.global_span(b, row0, row0 + 16 * (kMT - 1) + 9);
    const GlobalSpan cols = sp.global_span(b, col0, col0 + 8 * (kNT - 1) + 2);
    const GlobalSpan& gq = kQ ? rows : cols;
    const GlobalSpan& gk = kQ ? cols : rows;
    const bool any = !gq.empty() || !gk.empty();
    for_each_element(s, row0, col0, [&](float& x, int u, int v) {
      const int i = kQ ? u : v, j = kQ ? v : u;
      bool vis = m.visible(i, j, nq, nk);
      if (!vis && any && i < nq && j < nk && !(sp.causal && j > m.diag(i, nq, nk)))
        vis = gq.contains(sp, b, i) || gk.contains(sp, b, j);
      if (!vis) x = -INFINITY;
    });
  }
}

/// The verdict of `rule` (a callable that sets hidden elements of a fragment block to -inf) as bits, element
/// (mt, nt, e) at bit (mt * kNT + nt) * 4 + e (set: visible): the rule runs on a zero block, so a kernel evaluates
/// it before its score fragments are live (the rule's loads and searches next to the live S tile spill) and masks
/// them with apply_visible afterwards.
template <int kMT, int kNT, class Rule>
FLATATTN_DEVICE std::uint64_t rule_visible_bits(int row0, int col0, Rule&& rule) {
  static_assert(kMT * kNT * 4 <= 64, "one bit per fragment element of a thread");
  float x[kMT][kNT][4];
  for_each_element(x, row0, col0, [](float& v, int, int) { v = 0.f; });
  rule(x);
  std::uint64_t bits = 0;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (x[mt][nt][e] == 0.f) bits |= std::uint64_t{1} << ((mt * kNT + nt) * 4 + e);
  return bits;
}

/// apply_sparse_rule's verdict as bits (rule_visible_bits).
template <int kMT, int kNT, Layout L = Layout::query_major>
FLATATTN_DEVICE std::uint64_t sparse_rule_bits(const SparseSpec& sp, const FwdParams& p, const SparseStep& st, int b,
                                               int h, int r, int nq, int nk, int row0, int col0) {
  return rule_visible_bits<kMT, kNT>(row0, col0, [&](float (&x)[kMT][kNT][4]) {
    apply_sparse_rule<L>(x, sp, p, st, b, h, r, nq, nk, row0, col0);
  });
}

/// -inf where sparse_rule_bits' (or sparse_rule_visible's) bit is clear.
template <int kMT, int kNT>
FLATATTN_DEVICE void apply_visible(float (&s)[kMT][kNT][4], std::uint64_t visible) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (!((visible >> ((mt * kNT + nt) * 4 + e)) & 1)) s[mt][nt][e] = -INFINITY;
}

}  // namespace flatattn::cuda
