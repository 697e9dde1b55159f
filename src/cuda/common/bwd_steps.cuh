// The query blocks a backward CTA visits (one key block of BlockN keys): the contiguous range of
// blocks of BlockM rows that can see one of its keys, and the blocks of that range that need the
// per-element mask. Shared by the sm80 and sm90 backward kernels, so both visit the same blocks.
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/mask.cuh"

namespace flatattn::cuda {

template <int BlockM, int BlockN>
struct BwdQueryBlocks {
  int first = 0, last = -1;        ///< visited query blocks [first, last] (empty when last < first)
  int plain_lo = 0, plain_hi = -1;  ///< blocks in [plain_lo, plain_hi] need no per-element mask

  /// The key blocks query block i must visit (the same test the forward and every CTA use).
  FLATATTN_DEVICE static BlockRange<BlockN> range_of(const BandMask& bm, int nq, int i) {
    return BlockRange<BlockN>(bm, i * BlockM, min(i * BlockM + BlockM, nq) - 1);
  }

  /// nq: the sequence's queries; nq_rows: those with workspace rows (<= max_seqlen_q).
  FLATATTN_DEVICE BwdQueryBlocks(const BandMask& bm, int nq, int nq_rows, int n_block) {
    auto visits = [&](int i) {
      const BlockRange<BlockN> r = range_of(bm, nq, i);
      return r.begin <= n_block && n_block < r.end;
    };
    // A contiguous range (lo/hi are monotone in the row), bounded from the band's edges, then trimmed
    // with the BlockRange test (the one the forward visits key blocks by).
    if (nq_rows > 0) {
      const int n0 = n_block * BlockN;
      const std::int64_t shift = bm.shift;
      const std::int64_t r_lo = bm.right < 0 ? 0 : std::int64_t{n0} - shift - bm.right;
      const std::int64_t r_hi = bm.left < 0 ? nq_rows - 1 : std::int64_t{n0} + BlockN - 1 - shift + bm.left;
      if (!(r_hi < 0 || r_lo > nq_rows - 1)) {
        first = static_cast<int>((r_lo > 0 ? r_lo : 0) / BlockM);
        last = static_cast<int>((r_hi < nq_rows - 1 ? r_hi : nq_rows - 1) / BlockM);
      }
      while (first <= last && !visits(first)) ++first;
      while (last >= first && !visits(last)) --last;
    }
    // lo(r) and hi(r) are monotone in the row, so the masked blocks are a prefix and a suffix of
    // [first, last]; found once here instead of building a BlockRange (64-bit band arithmetic, ~60
    // instructions) every step.
    plain_lo = first;
    plain_hi = last;
    while (plain_lo <= last && range_of(bm, nq, plain_lo).needs_mask(n_block)) ++plain_lo;
    while (plain_hi >= plain_lo && range_of(bm, nq, plain_hi).needs_mask(n_block)) --plain_hi;
  }
  [[nodiscard]] FLATATTN_DEVICE int count() const { return last - first + 1 > 0 ? last - first + 1 : 0; }
  [[nodiscard]] FLATATTN_DEVICE bool needs_mask(int i) const { return i < plain_lo || i > plain_hi; }
};

}  // namespace flatattn::cuda
