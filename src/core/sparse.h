// The validated sparse mask of a call (Problem::sparse): block lists with holes and the element rule of
// partial blocks, host+device (the CPU engine and the CUDA kernels read the same struct). The public
// description is include/flatattn/sparse.h; docs/sparse.md explains the mechanism.
#pragma once

#include <cstdint>

#include "src/core/mask.h"  // FLATATTN_HD, MaskSpec

namespace flatattn {

/// An int32 tensor of rank <= 4 addressed as (b, h, r, s); a broadcast dim (extent 1) has stride 0.
struct IntView {
  const std::int32_t* data = nullptr;
  std::int64_t stride[4] = {0, 0, 0, 0};
  std::int64_t width = 0;  ///< extent of the last dim of an index tensor (W); counts: 0

  [[nodiscard]] FLATATTN_HD bool present() const { return data != nullptr; }
  [[nodiscard]] FLATATTN_HD std::int32_t at(std::int64_t b, std::int64_t h, std::int64_t r, std::int64_t s = 0) const {
    return data[b * stride[0] + h * stride[1] + r * stride[2] + s * stride[3]];
  }
};

/// One direction of block lists: per (b, h, row block) a count and indices of partial and of full blocks.
struct BlockLists {
  IntView num, idx;            ///< partial blocks
  IntView full_num, full_idx;  ///< full blocks (absent: none)

  [[nodiscard]] FLATATTN_HD int partial_count(std::int64_t b, std::int64_t h, std::int64_t r) const {
    return num.present() ? num.at(b, h, r) : 0;
  }
  [[nodiscard]] FLATATTN_HD int full_count(std::int64_t b, std::int64_t h, std::int64_t r) const {
    return full_num.present() ? full_num.at(b, h, r) : 0;
  }
};

/// The element rule inside partial blocks.
enum class SparseRule : std::uint8_t {
  band = 0,          ///< the MaskSpec of the call (causal, window); no restriction without one
  bits = 1,          ///< the bit-packed mask of each partial block
  local_global = 2,  ///< MaskSpec, or a global query row / key (not right of the diagonal with causal)
};

/// The sparse part of a validated call. Off (on = false) for dense calls: every backend then runs its
/// contiguous band iteration unchanged.
struct SparseSpec;

/// The sorted global positions of one sequence that lie in a range [a, e): list indices [lo, hi) of
/// SparseSpec::globals (SparseSpec::global_span). contains(x) equals SparseSpec::is_global(b, x) for every x in
/// [a, e): no search when the range holds no global position, one comparison when it holds one (a local +
/// global partial block usually holds none or one), else a binary search over those only.
struct GlobalSpan {
  int lo = 0, hi = 0;
  std::int32_t first = 0;  ///< position lo, when lo < hi
  [[nodiscard]] FLATATTN_HD bool empty() const { return lo >= hi; }
  [[nodiscard]] FLATATTN_HD bool contains(const SparseSpec& s, std::int64_t b, std::int64_t x) const;
};

struct SparseSpec {
  bool on = false;
  int block_q = 128, block_kv = 128;
  std::int64_t nqb = 0, nkb = 0;  ///< query / key blocks of the longest sequence
  BlockLists kv;                  ///< per query block: key blocks (the forward, dQ)
  BlockLists q;                   ///< per key block: query blocks (dK, dV); absent on the CPU: derived
  SparseRule rule = SparseRule::band;
  // bits: bit-block p of partial slot s of row (b, h, r) is offsets(b, h, r) + s; rows of `words` int32.
  const std::int32_t* bits = nullptr;
  IntView bit_offsets;
  int words = 0;  ///< ceil(block_kv / 32)
  std::int64_t bit_blocks = 0;  ///< P: bit-blocks in `bits`
  // local_global: sorted positions of sequence b: globals(b, 0, 0, g) for g < count(b).
  IntView globals, global_counts;
  bool causal = false;  ///< Options::causal: global rows and keys stay left of the diagonal
  // Lists left for the CUDA backend to derive on the device (src/cuda/sparse_derive.h) before its kernels run;
  // always false on the CPU, which derives them during validation. The kernels never read these.
  bool derive_kv = false;  ///< local + global alone: kv lists (B, 1, nqb, nkb) from the band and the globals
  bool derive_q = false;   ///< the backward's q lists: the transpose of kv over its (list_b, list_h) grid
  std::int64_t list_b = 1, list_h = 1;  ///< the kv lists' grid B' x H' (derive_q)

  /// Whether bit (t, c) (row t, key c within the block) of bit-block p is set.
  [[nodiscard]] FLATATTN_HD bool bit(std::int64_t p, int t, int c) const {
    const std::int32_t w = bits[(p * block_q + t) * words + (c >> 5)];
    return (static_cast<std::uint32_t>(w) >> (c & 31)) & 1u;
  }
  /// Number of global positions of sequence b, clamped to [0, G]: a device count outside it (not checked on the
  /// GPU) then cannot make the kernels read past global_positions' row; the host refuses such counts.
  [[nodiscard]] FLATATTN_HD int global_count(std::int64_t b) const {
    const int g = static_cast<int>(globals.width);
    if (!global_counts.present()) return g;
    const int c = global_counts.at(b, 0, 0);
    return c < 0 ? 0 : (c > g ? g : c);
  }
  /// The global positions of sequence b inside [a, e) (GlobalSpan): two binary searches, so that a kernel asks
  /// is_global of a fragment's rows or keys against the few positions in its range, or not at all.
  [[nodiscard]] FLATATTN_HD GlobalSpan global_span(std::int64_t b, std::int64_t a, std::int64_t e) const;
  /// The first of the first `count` global positions of sequence b (sorted) that is >= x, as a list index (count:
  /// none). Unsorted positions (invalid) give some index inside the count.
  [[nodiscard]] FLATATTN_HD std::int64_t global_lower_bound(std::int64_t b, std::int64_t count, std::int64_t x) const {
    std::int64_t lo = 0, hi = count;
    while (lo < hi) {
      const std::int64_t mid = (lo + hi) / 2;
      if (globals.at(b, 0, 0, mid) < x) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
  /// Whether position x is global in sequence b (binary search of the sorted list).
  [[nodiscard]] FLATATTN_HD bool is_global(std::int64_t b, std::int64_t x) const {
    int lo = 0, hi = global_count(b);
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      const std::int32_t g = globals.at(b, 0, 0, mid);
      if (g == x) return true;
      if (g < x) lo = mid + 1; else hi = mid;
    }
    return false;
  }
};

FLATATTN_HD GlobalSpan SparseSpec::global_span(std::int64_t b, std::int64_t a, std::int64_t e) const {
  const int count = global_count(b);
  auto lower = [&](std::int64_t x) { return static_cast<int>(global_lower_bound(b, count, x)); };
  GlobalSpan g;
  g.lo = lower(a);
  g.hi = e > a ? lower(e) : g.lo;
  if (g.lo < g.hi) g.first = globals.at(b, 0, 0, g.lo);
  return g;
}

FLATATTN_HD bool GlobalSpan::contains(const SparseSpec& s, std::int64_t b, std::int64_t x) const {
  if (lo >= hi) return false;
  if (hi - lo == 1) return first == x;
  int l = lo, h = hi;
  while (l < h) {
    const int mid = (l + h) / 2;
    const std::int32_t g = s.globals.at(b, 0, 0, mid);
    if (g == x) return true;
    if (g < x) l = mid + 1; else h = mid;
  }
  return false;
}

/// The local + global rule of element (i, j) of sequence b with lengths (nq, nk): the band, or a global
/// row or key (with causal, only j <= diag(i)). Host and device.
FLATATTN_HD bool local_global_visible(const SparseSpec& s, const MaskSpec& m, std::int64_t b, std::int64_t i,
                                      std::int64_t j, std::int64_t nq, std::int64_t nk) {
  if (m.visible(i, j, nq, nk)) return true;
  if (j >= nk || i >= nq) return false;
  if (s.causal && j > m.diag(i, nq, nk)) return false;
  return s.is_global(b, i) || s.is_global(b, j);
}

}  // namespace flatattn
