// The visible-key rule of src/core/mask.h in 32/64-bit device arithmetic, and what a tile needs from
// it: the range of key blocks that can hold a visible key, and whether a block needs per-element
// masking (only blocks that cross the band's edges or the end of the keys do).
#pragma once

#include <climits>
#include <cstdint>

#include "src/core/mask.h"  // FLATATTN_HD: host+device under nvcc, plain inline otherwise (host tests)
#include "src/cuda/common/params.h"

namespace flatattn::cuda {

struct BandMask {
  int nk;
  int shift;        ///< diag(i) - i: nk - nq (bottom-right) or 0 (top-left); |nk - nq| < 2^31
  int left, right;  ///< < 0: unbounded

  FLATATTN_HD BandMask(const FwdParams& p, int nq, int nk_)
      : nk(nk_), shift(p.bottom_right ? nk_ - nq : 0), left(p.left), right(p.right) {}

  /// First visible key of row i (may exceed hi(i): the row is fully masked).
  FLATATTN_HD int lo(int i) const {
    if (left < 0) return 0;
    const std::int64_t l = std::int64_t{i} + shift - left;
    return l < 0 ? 0 : (l > nk ? nk : static_cast<int>(l));
  }
  /// Last visible key of row i, at most nk - 1 (may be < lo(i)).
  FLATATTN_HD int hi(int i) const {
    if (right < 0) return nk - 1;
    const std::int64_t h = std::int64_t{i} + shift + right;
    return h > nk - 1 ? nk - 1 : (h < -1 ? -1 : static_cast<int>(h));
  }
  /// Queries [qlo, qhi] that see key j (the rule solved for the row): empty when j >= nk. Bounds clamped to
  /// int; row i sees key j iff qlo <= i <= qhi. Host and device (device: the key-major score tiles).
  FLATATTN_HD void queries(int j, int& qlo, int& qhi) const {
    auto clamp = [](std::int64_t x) { return static_cast<int>(x < -1 ? -1 : (x > INT_MAX ? INT_MAX : x)); };
    qlo = right < 0 ? 0 : clamp(std::int64_t{j} - shift - right);
    qhi = j >= nk ? -1 : (left < 0 ? INT_MAX : clamp(std::int64_t{j} - shift + left));
  }
};

/// Key blocks of size BlockN that a tile of query rows [r0, r1] must visit, and the part of them
/// that is visible to every row of the tile (no per-element mask needed).
template <int BlockN>
struct BlockRange {
  int begin = 0, end = 0;            ///< blocks [begin, end)
  int full_lo = 0, full_hi = -1;     ///< keys visible to every row: [full_lo, full_hi]

  FLATATTN_HD BlockRange(const BandMask& m, int r0, int r1) {
    const int lo = m.lo(r0), hi = m.hi(r1);  // lo and hi are non-decreasing in the row
    if (hi >= lo) {
      begin = lo / BlockN;
      end = hi / BlockN + 1;
    }
    full_lo = m.lo(r1);
    full_hi = m.hi(r0);
  }
  FLATATTN_HD bool needs_mask(int block) const {
    const int n0 = block * BlockN;
    return n0 < full_lo || n0 + BlockN - 1 > full_hi;
  }
};

}  // namespace flatattn::cuda
