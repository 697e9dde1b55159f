// The visible-key rule shared by every backend (host and device): causal, both alignments, window.
#pragma once

#include <cstdint>

#include "flatattn/options.h"

#if defined(__CUDACC__)
#define FLATATTN_HD __host__ __device__ __forceinline__
#else
#define FLATATTN_HD inline
#endif

namespace flatattn {

/// Mask of one problem. Row i of a sequence with lengths (nq, nk) sees keys j in [lo(i), hi(i)]
/// (inclusive; empty when lo > hi), where the diagonal is diag(i) = i + (bottom_right ? nk - nq : 0),
/// hi = min(nk - 1, diag + right) (right = 0 when causal; unbounded when -1),
/// lo = max(0, diag - left) (unbounded when left = -1).
struct MaskSpec {
  bool bottom_right = true;
  std::int64_t left = -1;   ///< -1: unbounded
  std::int64_t right = -1;  ///< -1: unbounded; 0 for causal

  [[nodiscard]] FLATATTN_HD bool masked() const { return left >= 0 || right >= 0; }
  [[nodiscard]] FLATATTN_HD std::int64_t diag(std::int64_t i, std::int64_t nq, std::int64_t nk) const {
    return bottom_right ? i + (nk - nq) : i;
  }
  /// First visible key of row i (may exceed hi: the row is then fully masked).
  [[nodiscard]] FLATATTN_HD std::int64_t lo(std::int64_t i, std::int64_t nq, std::int64_t nk) const {
    if (left < 0) return 0;
    std::int64_t l = diag(i, nq, nk) - left;
    return l < 0 ? 0 : l;
  }
  /// Last visible key of row i (may be < lo: the row is then fully masked).
  [[nodiscard]] FLATATTN_HD std::int64_t hi(std::int64_t i, std::int64_t nq, std::int64_t nk) const {
    if (right < 0) return nk - 1;
    std::int64_t h = diag(i, nq, nk) + right;
    return h < nk - 1 ? h : nk - 1;
  }
  [[nodiscard]] FLATATTN_HD bool visible(std::int64_t i, std::int64_t j, std::int64_t nq, std::int64_t nk) const {
    return j >= lo(i, nq, nk) && j <= hi(i, nq, nk);
  }
};

/// The mask of a call's Options (causal_align, window; causal makes the right edge the diagonal): what
/// validation stores in Problem::mask, and what tools that judge or count a call's pairs rebuild. Host only.
inline MaskSpec mask_spec(const Options& o) {
  MaskSpec m;
  m.bottom_right = o.causal_align == CausalAlign::bottom_right;
  m.left = o.window.left;
  m.right = o.causal ? 0 : o.window.right;
  return m;
}

}  // namespace flatattn
