// What the forward and backward tiles share: the visible key range of a row tile, the visible row
// range of a key block, per-row masking of a logit block, and 64-byte aligned scratch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>

#include "src/core/mask.h"
#include "src/core/problem.h"

namespace flatattn::cpu {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// An inclusive range [lo, hi]; empty when hi < lo.
struct Range {
  std::int64_t lo = 0, hi = -1;
  [[nodiscard]] bool empty() const { return hi < lo; }
};

/// Keys seen by any of the rows [i0, i0 + rows) of a sequence (lo(i) and hi(i) never decrease with i,
/// so this is [lo(i0), hi(last)] clipped to the keys). Rows inside may still be fully masked.
inline Range tile_keys(const MaskSpec& m, const SeqSpan& sp, std::int64_t i0, std::int64_t rows) {
  if (rows <= 0 || sp.nk <= 0) return {};
  return {m.lo(i0, sp.nq, sp.nk), std::min(m.hi(i0 + rows - 1, sp.nq, sp.nk), sp.nk - 1)};
}

/// Rows that see at least one key of [k0, k1] (inclusive): first row with hi >= k0 to last row with
/// lo <= k1 (both monotone in the row, so two binary searches). May contain fully masked rows.
inline Range block_rows(const MaskSpec& m, const SeqSpan& sp, std::int64_t k0, std::int64_t k1) {
  if (sp.nq <= 0 || k1 < k0) return {};
  std::int64_t a = 0, b = sp.nq;  // first row with hi(i) >= k0
  while (a < b) {
    const std::int64_t mid = (a + b) / 2;
    if (m.hi(mid, sp.nq, sp.nk) >= k0) b = mid; else a = mid + 1;
  }
  const std::int64_t first = a;
  a = 0, b = sp.nq;  // first row with lo(i) > k1
  while (a < b) {
    const std::int64_t mid = (a + b) / 2;
    if (m.lo(mid, sp.nq, sp.nk) > k1) b = mid; else a = mid + 1;
  }
  return {first, a - 1};
}

/// Sets s[i * lds + j] = -inf for the keys k0 + j (0 <= j < ncols) that row i0 + i does not see, for the
/// real rows 0 <= i < rows. Rows whose visible range covers the whole block are left alone, so a block
/// away from the mask's boundary costs two comparisons per row.
inline void mask_block(const MaskSpec& m, const SeqSpan& sp, std::int64_t i0, std::int64_t rows, std::int64_t k0,
                       std::int64_t ncols, float* s, std::int64_t lds) {
  const std::int64_t k_last = k0 + ncols - 1;
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int64_t lo = m.lo(i0 + i, sp.nq, sp.nk);
    const std::int64_t hi = std::min(m.hi(i0 + i, sp.nq, sp.nk), sp.nk - 1);
    if (lo <= k0 && hi >= k_last) continue;
    float* row = s + i * lds;
    if (hi < lo) {  // fully masked row
      std::fill(row, row + ncols, kNegInf);
      continue;
    }
    const std::int64_t a = std::clamp<std::int64_t>(lo - k0, 0, ncols);
    const std::int64_t b = std::clamp<std::int64_t>(hi + 1 - k0, 0, ncols);
    std::fill(row, row + a, kNegInf);
    std::fill(row + b, row + ncols, kNegInf);
  }
}

/// Attention sinks (gpt-oss; Xiao et al. 2023) on one finished row: the row's natural-log LSE and output
/// factor inv without the sink become L = log(e^lse + e^sink) = max + log1p(e^-|lse - sink|) and
/// inv e^(lse - L) (<= inv: no overflow for a sink far above the logits); an empty row (lse = -inf) gets
/// O = 0 and LSE = sink. The CUDA kernels do the same (add_sinks, src/cuda/common/softmax.cuh).
inline void add_sink(float sink, float& inv, float& lse) {
  const float mx = std::max(lse, sink);
  if (mx == kNegInf) return;
  const float l = mx + std::log1p(std::exp(-std::abs(lse - sink)));
  inv *= std::exp(lse - l);
  lse = l;
}

/// 64-byte aligned float scratch (one allocation per thread, carved into tiles).
class Scratch {
 public:
  explicit Scratch(std::size_t floats)
      : p_(static_cast<float*>(std::aligned_alloc(64, std::max<std::size_t>(64, (floats * 4 + 63) / 64 * 64)))) {
    if (!p_) throw std::bad_alloc();
  }
  [[nodiscard]] float* data() const { return p_.get(); }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> p_;
};

/// Carves consecutive 64-byte aligned segments (sizes in floats) out of a buffer; with a null base it only
/// counts, so the same code sizes and fills a workspace.
class Carver {
 public:
  explicit Carver(float* base = nullptr) : base_(base) {}
  float* take(std::size_t floats) {
    float* p = base_ ? base_ + used_ : nullptr;
    used_ += (floats + 15) / 16 * 16;
    return p;
  }
  [[nodiscard]] std::size_t floats() const { return used_; }

 private:
  float* base_;
  std::size_t used_ = 0;
};

}  // namespace flatattn::cpu
