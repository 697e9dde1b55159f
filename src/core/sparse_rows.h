// The block lists the library derives, one block at a time, host and device (issue 16): which key blocks
// local + global attention lists for a query block, and which query blocks list a key block (the
// transposed lists of the backward). The host's local_global_lists (src/core/sparse_lists.cc) loops over
// rows with these functions and the CUDA kernels (src/cuda/sparse_derive.cu) run one warp per row with the
// same functions, so both backends build the same lists, in the same order, with the same full / partial
// split. The transpose: the device gathers each column with transposed_block (quadratic in blocks, fine one
// warp per column), the host keeps its linear scatter (transpose_lists); tests/cpu/test_sparse_rows.cc checks
// the two agree.
//
// Device memory is never trusted: counts are clamped to their row's width and global counts to G before
// anything is read, so whatever a list or a position holds, nothing is read outside its tensor. For valid
// contents (the CPU checks them) the clamps change nothing.
#pragma once

#include <cstdint>

#include "src/core/mask.h"    // FLATATTN_HD, MaskSpec
#include "src/core/sparse.h"  // SparseSpec, BlockLists, IntView

namespace flatattn {

/// Where a block of a derived row goes.
enum class BlockKind : std::uint8_t { none = 0, partial = 1, full = 2 };

/// x clamped to [0, hi].
FLATATTN_HD std::int64_t clamp_count(std::int64_t x, std::int64_t hi) { return x < 0 ? 0 : x > hi ? hi : x; }

// ---- local + global: the key blocks of a query block ---------------------------------------------------

/// The number of global positions of sequence b read from s, clamped to [0, G].
FLATATTN_HD std::int64_t safe_global_count(const SparseSpec& s, std::int64_t b) {
  return s.globals.present() ? s.global_count(b) : 0;
}

/// Whether one of the first `count` global positions of sequence b (sorted) lies in [a, e): the first
/// position >= a (SparseSpec::global_lower_bound), then that one is compared with e. Unsorted positions
/// (invalid) give some answer, read inside the count.
FLATATTN_HD bool any_global_in(const SparseSpec& s, std::int64_t b, std::int64_t count, std::int64_t a,
                               std::int64_t e) {
  const std::int64_t lo = s.global_lower_bound(b, count, a);
  return lo < count && s.globals.at(b, 0, 0, lo) < e;
}

/// Whether some row i in [i0, i1] of a sequence with lengths (nq, nk) sees some key j in [j0, j1] (j0 >= 0)
/// under the band m: exists i with max(lo(i), j0) <= min(hi(i), j1). That condition is (hi(i) >= j0) and
/// (lo(i) <= hi(i), lo(i) <= j1 beyond it); lo and hi never decrease with i, so the first holds from some
/// row on and the others up to some row: the answer is the condition at the first row with hi(i) >= j0
/// (binary search, O(log(i1 - i0))). tests/cpu/test_sparse_rows.cc checks it against the loop over rows.
FLATATTN_HD bool band_touches(const MaskSpec& m, std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1,
                              std::int64_t nq, std::int64_t nk) {
  std::int64_t lo = i0, hi = i1 + 1;  // the first row in [i0, i1] with hi(row) >= j0 (i1 + 1: none)
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (m.hi(mid, nq, nk) >= j0) hi = mid; else lo = mid + 1;
  }
  if (lo > i1) return false;
  const std::int64_t a = m.lo(lo, nq, nk), e = m.hi(lo, nq, nk);
  return (a > j0 ? a : j0) <= (e < j1 ? e : j1);
}

/// What query block r of sequence b (lengths nq, nk) needs from the globals, once per row.
struct LocalGlobalRow {
  std::int64_t i0 = 0, i1 = -1;  ///< its rows [i0, i1] inside the sequence (i1 < i0: the block is past nq)
  std::int64_t gcount = 0;       ///< global positions of the sequence (clamped)
  bool global_row = false;       ///< one of its rows is global: it reaches every key block (causal: left part)
};

FLATATTN_HD LocalGlobalRow local_global_row(const SparseSpec& s, std::int64_t b, std::int64_t r, std::int64_t nq) {
  LocalGlobalRow row;
  row.i0 = r * s.block_q;
  const std::int64_t end = row.i0 + s.block_q < nq ? row.i0 + s.block_q : nq;
  row.i1 = end - 1;
  row.gcount = safe_global_count(s, b);
  row.global_row = row.i0 <= row.i1 && any_global_in(s, b, row.gcount, row.i0, row.i1 + 1);
  return row;
}

/// Key block c of query row block `row` of sequence b under local + global: full where the band m covers
/// every (row, key) pair of the block inside the sequence; partial where the band, a global row or a global
/// key reaches some pair (with s.causal, a global reaches only keys up to the diagonal: a block right of the
/// diagonal of the block's last row stays out); none elsewhere and past the sequence.
FLATATTN_HD BlockKind local_global_block(const SparseSpec& s, const MaskSpec& m, std::int64_t b,
                                         const LocalGlobalRow& row, std::int64_t c, std::int64_t nq, std::int64_t nk) {
  const std::int64_t j0 = c * s.block_kv;
  if (row.i0 > row.i1 || j0 >= nk) return BlockKind::none;
  const std::int64_t j1 = (j0 + s.block_kv < nk ? j0 + s.block_kv : nk) - 1;  // keys [j0, j1]
  if (m.lo(row.i1, nq, nk) <= j0 && m.hi(row.i0, nq, nk) >= j1) return BlockKind::full;
  if (band_touches(m, row.i0, row.i1, j0, j1, nq, nk)) return BlockKind::partial;
  const bool causal_ok = !s.causal || j0 <= m.diag(row.i1, nq, nk);
  const bool global_touch = causal_ok && (row.global_row || any_global_in(s, b, row.gcount, j0, j1 + 1));
  return global_touch ? BlockKind::partial : BlockKind::none;
}

// ---- the transpose: the query blocks that list a key block -----------------------------------------------

/// Whether c is among the first `count` entries of row (b, h, r) of idx (sorted: binary search). The count
/// is clamped to [0, idx.width].
FLATATTN_HD bool row_lists(const IntView& num, const IntView& idx, std::int64_t b, std::int64_t h, std::int64_t r,
                           std::int64_t c) {
  if (!num.present()) return false;
  std::int64_t lo = 0, hi = clamp_count(num.at(b, h, r), idx.width);
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    const std::int32_t v = idx.at(b, h, r, mid);
    if (v == c) return true;
    if (v < c) lo = mid + 1; else hi = mid;
  }
  return false;
}

/// Whether kv row (b, h, r) lists key block c as partial (bit 0) and / or as full (bit 1). Valid lists
/// give at most one of the two; both are kept apart so that the transpose of any lists is well defined.
FLATATTN_HD unsigned transposed_block(const BlockLists& kv, std::int64_t b, std::int64_t h, std::int64_t r,
                                      std::int64_t c) {
  return (row_lists(kv.num, kv.idx, b, h, r, c) ? 1u : 0u) |
         (row_lists(kv.full_num, kv.full_idx, b, h, r, c) ? 2u : 0u);
}

// ---- views -----------------------------------------------------------------------------------------------

/// Views of contiguous lists: counts (nb, nh, rows), indices (nb, nh, rows, width); a dim of extent 1
/// broadcasts (stride 0), as in the user's lists. fnum / fidx may be null (no full lists).
inline BlockLists contiguous_lists(const std::int32_t* num, const std::int32_t* idx, const std::int32_t* fnum,
                                   const std::int32_t* fidx, std::int64_t nb, std::int64_t nh, std::int64_t rows,
                                   std::int64_t width) {
  auto counts = [&](const std::int32_t* d) {
    IntView v;
    v.data = d;
    v.stride[0] = nb == 1 ? 0 : nh * rows, v.stride[1] = nh == 1 ? 0 : rows, v.stride[2] = 1, v.stride[3] = 0;
    return v;
  };
  auto index = [&](const std::int32_t* d) {
    IntView v;
    v.data = d;
    v.stride[0] = nb == 1 ? 0 : nh * rows * width, v.stride[1] = nh == 1 ? 0 : rows * width;
    v.stride[2] = width, v.stride[3] = 1;
    v.width = width;
    return v;
  };
  BlockLists l;
  l.num = counts(num), l.idx = index(idx);
  if (fnum != nullptr) l.full_num = counts(fnum), l.full_idx = index(fidx);
  return l;
}

}  // namespace flatattn
