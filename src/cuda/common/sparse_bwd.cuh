// Block-sparse attention in the backward (issue 16; src/core/sparse.h, docs/sparse.md): the query-block
// iterator with holes of a key-stationary CTA (one key block of BlockN keys, every query head of its kv
// head's group) and the element rule of a partial block seen from its key block.
// A CTA's keys lie in one key block c of the lists (block_kv is a multiple of BlockN, checked at launch);
// it walks the transposed lists of c (q_num_blocks / q_indices, full_q_*), per query head of the group,
// each listed query block of block_q rows as block_q / BlockM kernel query blocks.
#pragma once

#include <cstdint>
#include <type_traits>

#include "src/core/sparse.h"
#include "src/cuda/common/sparse.cuh"

namespace flatattn::cuda {

/// The sparse argument of a backward kernel: the SparseSpec (kSparse) or nothing (the dense kernel).
struct NoSparseArg {};
template <bool kSparse>
using BwdSparseArg = std::conditional_t<kSparse, SparseSpec, NoSparseArg>;
FLATATTN_DEVICE const SparseSpec* sparse_spec_of(const NoSparseArg&) { return nullptr; }
FLATATTN_DEVICE const SparseSpec* sparse_spec_of(const SparseSpec& s) { return &s; }

/// A position of the walk: query head h0 + hh of the group, step `it` of that head's list (hh == group: done).
struct SparseBwdCursor {
  int hh = 0, it = 0;
};

/// One kernel query block of the walk: its index i (rows i BlockM ...), whether its list block is partial,
/// and its list row r (the query block of the lists).
struct SparseBwdStep {
  int i = 0;
  bool partial = false;
  int r = 0;
};

/// The listed query blocks of key block c (kernel key block n_block) of sequence b, for the query heads
/// h0 .. h0 + group - 1: per head the full blocks, then the partial ones, each split into kernel blocks of
/// BlockM rows; blocks at or past the sequence's rows with a workspace (nq_rows) or negative are skipped.
/// Device lists are not validated (docs/sparse.md): counts are clamped to the index rows' width.
template <int BlockM, int BlockN>
struct SparseQueryBlocks {
  const SparseSpec* s;
  int b, h0, group, c, nq_rows;
  int per = 1;

  FLATATTN_DEVICE SparseQueryBlocks(const SparseSpec* s_, int b_, int h0_, int group_, int n_block, int nq_rows_)
      : s(s_), b(b_), h0(h0_), group(group_), c(n_block * BlockN / s_->block_kv), nq_rows(nq_rows_) {
    per = s->block_q / BlockM;
  }
  FLATATTN_DEVICE int nfull(int hh) const {
    return SparseKeyBlocks<BlockN>::clamp(s->q.full_count(b, h0 + hh, c), s->q.full_idx.width);
  }
  FLATATTN_DEVICE int total(int hh) const {
    return (nfull(hh) + SparseKeyBlocks<BlockN>::clamp(s->q.partial_count(b, h0 + hh, c), s->q.idx.width)) * per;
  }
  /// Step `it` of head hh (0 <= it < total(hh)).
  FLATATTN_DEVICE SparseBwdStep at(int hh, int it) const {
    SparseBwdStep st;
    const int l = it / per, sub = it - l * per;
    const int nf = nfull(hh);
    st.partial = l >= nf;
    st.r = st.partial ? s->q.idx.at(b, h0 + hh, c, l - nf) : s->q.full_idx.at(b, h0 + hh, c, l);
    st.i = st.r * per + sub;
    return st;
  }
  /// The first position at or after `cur` whose kernel block holds a row of the sequence ({group, 0}: none),
  /// its step in `st`.
  FLATATTN_DEVICE SparseBwdCursor next(SparseBwdCursor cur, SparseBwdStep& st) const {
    const int seq_blocks = (nq_rows + s->block_q - 1) / s->block_q;  // r below it: no overflow in i * BlockM
    for (; cur.hh < group; ++cur.hh, cur.it = 0) {
      const int n = total(cur.hh);
      for (; cur.it < n; ++cur.it) {
        st = at(cur.hh, cur.it);
        if (st.r >= 0 && st.r < seq_blocks && st.i * BlockM < nq_rows) return cur;
      }
    }
    return cur;
  }
};

/// The walk W of a backward kernel (SparseQueryBlocks) or nothing (NoSparseArg: the dense kernel).
template <class W>
FLATATTN_DEVICE W make_sparse_walk(const SparseSpec* s, int b, int h0, int group, int n_block, int nq_rows) {
  if constexpr (std::is_same_v<W, NoSparseArg>) {
    return W{};
  } else {
    return W(s, b, h0, group, n_block, nq_rows);
  }
}

/// The element rule of a partial block (query list row r, key list block c) on the backward's fragments
/// (L: query-major, rows row0 + ... and keys col0 + ...; key-major, the sm90 kernel's S^T, keys row0 + ... and
/// queries col0 + ..., in sequence coordinates): apply_sparse_rule with the block's
/// partial slot in kv row r, found by a binary search of the sorted kv_indices row (the bits' block is
/// mask_block_offsets + slot). A block the kv row does not list as partial (lists that are not each other's
/// transpose) is hidden entirely, as the forward never visited it.
template <Layout L = Layout::query_major, int kMT, int kNT>
FLATATTN_DEVICE void apply_sparse_rule_bwd(float (&sc)[kMT][kNT][4], const SparseSpec& sp, const FwdParams& p, int c,
                                           int b, int h, int r, int nq, int nk, int row0, int col0) {
  SparseStep st;
  st.partial = true;
  st.c = c;
  if (sp.rule == SparseRule::bits) {
    int lo = 0, hi = SparseKeyBlocks<1>::clamp(sp.kv.partial_count(b, h, r), sp.kv.idx.width);
    st.slot = -1;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      const int x = sp.kv.idx.at(b, h, r, mid);
      if (x == c) {
        st.slot = mid;
        break;
      }
      if (x < c) lo = mid + 1; else hi = mid;
    }
    if (st.slot < 0) {
      for_each_element(sc, row0, col0, [](float& x, int, int) { x = -INFINITY; });
      return;
    }
  }
  apply_sparse_rule<L>(sc, sp, p, st, b, h, r, nq, nk, row0, col0);
}

/// apply_sparse_rule_bwd's verdict as bits (common/sparse.cuh rule_visible_bits; the search and loads next to
/// the live S tile spilled, sm80/bwd_kernel.cuh), applied with apply_visible.
template <int kMT, int kNT, Layout L = Layout::query_major>
FLATATTN_DEVICE std::uint64_t sparse_rule_visible(const SparseSpec& sp, const FwdParams& p, int c, int b, int h, int r,
                                                  int nq, int nk, int row0, int col0) {
  return rule_visible_bits<kMT, kNT>(row0, col0, [&](float (&x)[kMT][kNT][4]) {
    apply_sparse_rule_bwd<L>(x, sp, p, c, b, h, r, nq, nk, row0, col0);
  });
}

}  // namespace flatattn::cuda
