// Block-sparse attention on the CPU engine (src/core/sparse.h): the key-block iterator with holes. For a
// tile of query rows it gathers the listed key blocks of the query blocks it covers, merges them into
// ascending key intervals (the only keys the tile visits: unlisted blocks cost nothing), and masks a logit
// block element by element -- full blocks only past the sequence's end, partial blocks by the element rule
// (the band, the bits or local + global), unlisted blocks entirely. docs/sparse.md.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "src/core/problem.h"
#include "src/cpu/tile.h"

namespace flatattn::cpu {

/// The listed blocks of query rows [i0, i0 + rows) of sequence b, query head h.
class SparseRows {
 public:
  SparseRows(const Problem& p, std::int64_t b, std::int64_t h, const SeqSpan& sp, std::int64_t i0, std::int64_t rows)
      : p_(p), s_(p.sparse), b_(b), h_(h), sp_(sp), i0_(i0) {
    if (rows <= 0 || sp.nq <= 0 || sp.nk <= 0) return;
    r0_ = i0 / s_.block_q;
    r1_ = (i0 + rows - 1) / s_.block_q;
    const std::int64_t nkb = s_.nkb;
    state_.assign(static_cast<std::size_t>((r1_ - r0_ + 1) * nkb), kNone);
    slot_.assign(state_.size(), 0);
    std::vector<char> any(static_cast<std::size_t>(nkb), 0);
    for (std::int64_t r = r0_; r <= r1_; ++r) {
      for (int full = 0; full < 2; ++full) {
        const int n = full ? s_.kv.full_count(b, h, r) : s_.kv.partial_count(b, h, r);
        for (int sl = 0; sl < n; ++sl) {
          const std::int64_t c = full ? s_.kv.full_idx.at(b, h, r, sl) : s_.kv.idx.at(b, h, r, sl);
          if (c * s_.block_kv >= sp.nk) continue;  // a block past this sequence's keys
          const std::size_t e = static_cast<std::size_t>((r - r0_) * nkb + c);
          state_[e] = full ? kFull : kPartial;
          slot_[e] = sl;
          any[c] = 1;
        }
      }
    }
    for (std::int64_t c = 0; c < nkb; ++c) {  // merge adjacent listed blocks into key intervals
      if (!any[c]) continue;
      const std::int64_t a = c * s_.block_kv, e = std::min(sp.nk, (c + 1) * s_.block_kv) - 1;
      if (!keys_.empty() && keys_.back().hi + 1 == a) {
        keys_.back().hi = e;
      } else {
        keys_.push_back({a, e});
      }
    }
  }

  /// Ascending, disjoint key intervals [lo, hi] of the listed blocks; they start on a block boundary.
  [[nodiscard]] const std::vector<Range>& intervals() const { return keys_; }
  /// Keys from the first listed to the last listed (FLAT's span); empty when nothing is listed.
  [[nodiscard]] Range span() const { return keys_.empty() ? Range{} : Range{keys_.front().lo, keys_.back().hi}; }

  /// Sets s[i * lds + j] = -inf where row i0 + i (0 <= i < rows) does not see key k0 + j (0 <= j < ncols), and
  /// for every key outside `keys` (the interval being visited: a step that starts on the panel before an
  /// interval must not count the previous interval's keys twice).
  void mask(std::int64_t rows, std::int64_t k0, std::int64_t ncols, float* s, std::int64_t lds,
            const Range& keys) const {
    const std::int64_t a = std::clamp<std::int64_t>(keys.lo - k0, 0, ncols);
    const std::int64_t e = std::clamp<std::int64_t>(keys.hi + 1 - k0, a, ncols);
    for (std::int64_t i = 0; i < rows; ++i) {
      std::fill(s + i * lds, s + i * lds + a, kNegInf);
      std::fill(s + i * lds + e, s + i * lds + ncols, kNegInf);
    }
    for (std::int64_t i = 0; i < rows; ++i) {
      const std::int64_t qi = i0_ + i;
      float* row = s + i * lds;
      if (qi >= sp_.nq || state_.empty()) {
        std::fill(row, row + ncols, kNegInf);
        continue;
      }
      const std::int64_t r = qi / s_.block_q;
      for (std::int64_t j = a; j < e;) {
        const std::int64_t kj = k0 + j;
        const std::int64_t c = kj / s_.block_kv;
        const std::int64_t seg_end = std::min(e, (c + 1) * s_.block_kv - k0);  // this block's columns
        if (kj >= sp_.nk || c >= s_.nkb) {
          std::fill(row + j, row + e, kNegInf);
          break;
        }
        const std::size_t e = static_cast<std::size_t>((r - r0_) * s_.nkb + c);
        const std::int64_t last = std::min(seg_end, sp_.nk - k0);  // columns past the keys are masked
        if (state_[e] == kNone) {
          std::fill(row + j, row + seg_end, kNegInf);
        } else if (state_[e] == kPartial) {
          for (std::int64_t x = j; x < last; ++x)
            if (!partial_visible(r, slot_[e], c, qi, k0 + x)) row[x] = kNegInf;
        }
        if (last < seg_end) std::fill(row + std::max(j, last), row + seg_end, kNegInf);
        j = seg_end;
      }
    }
  }

 private:
  static constexpr std::int8_t kNone = 0, kPartial = 1, kFull = 2;

  [[nodiscard]] bool partial_visible(std::int64_t r, int slot, std::int64_t c, std::int64_t i, std::int64_t j) const {
    switch (s_.rule) {
      case SparseRule::band: return p_.mask.visible(i, j, sp_.nq, sp_.nk);
      case SparseRule::bits:
        return s_.bit(s_.bit_offsets.at(b_, h_, r) + slot, static_cast<int>(i - r * s_.block_q),
                      static_cast<int>(j - c * s_.block_kv));
      case SparseRule::local_global: return local_global_visible(s_, p_.mask, b_, i, j, sp_.nq, sp_.nk);
    }
    return false;
  }

  const Problem& p_;
  const SparseSpec& s_;
  std::int64_t b_, h_;
  SeqSpan sp_;
  std::int64_t i0_;
  std::int64_t r0_ = 0, r1_ = -1;
  std::vector<std::int8_t> state_;
  std::vector<int> slot_;
  std::vector<Range> keys_;
};

/// The query rows of sequence b, head h that list key block c (partial or full), as ascending, disjoint
/// row intervals [lo, hi] clipped to the sequence (from the transposed q lists).
inline std::vector<Range> sparse_rows_of_block(const Problem& p, std::int64_t b, std::int64_t h, const SeqSpan& sp,
                                               std::int64_t c) {
  const SparseSpec& s = p.sparse;
  std::vector<std::int64_t> rs;
  for (int full = 0; full < 2; ++full) {
    const int n = full ? s.q.full_count(b, h, c) : s.q.partial_count(b, h, c);
    for (int sl = 0; sl < n; ++sl) rs.push_back(full ? s.q.full_idx.at(b, h, c, sl) : s.q.idx.at(b, h, c, sl));
  }
  std::sort(rs.begin(), rs.end());
  std::vector<Range> out;
  for (std::int64_t r : rs) {
    const std::int64_t a = r * s.block_q, e = std::min(sp.nq, (r + 1) * s.block_q) - 1;
    if (a > e) continue;
    if (!out.empty() && out.back().hi + 1 == a) {
      out.back().hi = e;
    } else {
      out.push_back({a, e});
    }
  }
  return out;
}

}  // namespace flatattn::cpu
