// The dropout keep decision: Philox-4x32-10 and the pure function keep(seed, offset, b, h, i, j) that every
// backend (the CPU engine, each CUDA family, the fp64 oracle, dropout_mask()) evaluates bit for bit.
// Host+device.
//
// Philox-4x32-R (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11, Sec. 3.2):
// a 128-bit counter and a 64-bit key give 128 random bits in R rounds of two 32x32->64 multiplications; the
// key is bumped by the Weyl constants between rounds. Checked against Random123's known-answer vectors
// (tests/core/test_dropout.cc).
//
// The dropout stream (docs/variants.md, "Dropout"): for sequence b, QUERY head h of Hq, row i and key column
// j within the sequence (varlen: within the sequence), seed and offset (uint64, given by the caller),
//   key     = (seed_lo32, seed_hi32 ^ offset_hi32)
//   counter = ((j >> 5) * 4 + ((j >> 1) & 3), i, b * Hq + h, offset_lo32)
// The 128 output bits are 8 16-bit words, word w = (out[w >> 1] >> (16 (w & 1))) & 0xffff; element (i, j)
// reads word w = ((j >> 3) & 3) * 2 + (j & 1), and is kept iff word >= t, t = p * 65536 rounded to nearest (ties
// to even).
// Why this mapping: in the m16n8 accumulator layout of the CUDA kernels a thread holds, for one row, the
// columns 8 nt + 2 (lane & 3) + {0, 1}; four consecutive n-tiles (32 keys) then read all 8 words of one
// Philox call, so a query-major kernel needs one call per 8 elements and nothing is computed twice.
// Keep probability 1 - t / 65536: p is quantized to 1/65536 (|error| <= 2^-17); the kept entries are still
// scaled by 1 / (1 - p) with the caller's p. This is not FlashAttention-2's stream (FA2 uses 8-bit
// thresholds and its own counter layout): a mask cannot be carried between the two libraries.
#pragma once

#include <cmath>
#include <cstdint>

#include "src/core/mask.h"  // FLATATTN_HD

namespace flatattn {

/// 128 bits of Philox output (or a counter).
struct Philox4 {
  std::uint32_t x[4];
};

/// Philox-4x32-R of `ctr` under key (k0, k1); R = 10 is the standard (Random123's philox4x32 default).
template <int R = 10>
FLATATTN_HD Philox4 philox4x32(Philox4 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // multipliers (SC'11, Table 2)
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key bumps: golden ratio, sqrt(3) - 1
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < R; ++r) {
    if (r > 0) k0 += kW0, k1 += kW1;
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * ctr.x[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * ctr.x[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = Philox4{{hi1 ^ ctr.x[1] ^ k0, lo1, hi0 ^ ctr.x[3] ^ k1, lo0}};
  }
  return ctr;
}

/// The threshold t = round(p * 65536) of keep probability 1 - t / 65536, for p in [0, 1).
inline std::uint32_t dropout_threshold(double p) {
  const double t = std::nearbyint(p * 65536.0);
  return t <= 0 ? 0u : t >= 65536.0 ? 65536u : static_cast<std::uint32_t>(t);
}

/// The stream's per-call constants: Philox key, the counter's last word, the threshold and Hq; row0, col0: the
/// position of the call's first query row and key column in the sequence whose mask it reproduces (context
/// parallelism, Options::dropout_row0/col0; 0 otherwise): element (i, j) of the call is element (i + row0, j + col0)
/// of the stream. col0 % 32 == 0 (validated), so the word an element reads, (j >> 3) & 3 and j & 1, is unchanged.
struct DropoutStream {
  std::uint32_t k0 = 0, k1 = 0, c3 = 0, threshold = 0;
  std::int32_t hq = 1;
  std::int32_t row0 = 0, col0 = 0;
  /// Options::dropout_batch0/head0 folded into the third counter word: the call's (b, h) draws the stream's slot
  /// b * hq + h + bh0 = (b + batch0) * heads + h + head0, where hq is the stream's head count (dropout_heads).
  std::int32_t bh0 = 0;
};

inline DropoutStream dropout_stream(std::uint64_t seed, std::uint64_t offset, double p, std::int64_t hq,
                                    std::int64_t row0 = 0, std::int64_t col0 = 0, std::int64_t bh0 = 0) {
  return {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32) ^ static_cast<std::uint32_t>(offset >> 32),
          static_cast<std::uint32_t>(offset), dropout_threshold(p), static_cast<std::int32_t>(hq),
          static_cast<std::int32_t>(row0), static_cast<std::int32_t>(col0), static_cast<std::int32_t>(bh0)};
}

/// The Philox output that serves element (i, j) of (b, h), and the 7 other elements of its group
/// (keys (j & ~31) + ((j >> 1) & 3) * 2 + 8 q + e, q < 4, e < 2).
FLATATTN_HD Philox4 dropout_block(std::uint32_t k0, std::uint32_t k1, std::uint32_t c3, std::int32_t hq, int b, int h,
                                  int i, int j) {
  const Philox4 ctr{{static_cast<std::uint32_t>(j >> 5) * 4u + ((static_cast<std::uint32_t>(j) >> 1) & 3u),
                     static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(b * hq + h), c3}};
  return philox4x32<10>(ctr, k0, k1);
}

/// Element j's 16-bit word of its group's Philox output. The 32-bit word is selected, not indexed: a
/// runtime index into o would put it in local memory on the GPU.
FLATATTN_HD std::uint32_t dropout_word(const Philox4& o, int j) {
  const int k = (j >> 3) & 3;
  const std::uint32_t w = (k & 2) ? ((k & 1) ? o.x[3] : o.x[2]) : ((k & 1) ? o.x[1] : o.x[0]);
  return (j & 1) ? (w >> 16) : (w & 0xffffu);
}

/// THE definition: whether element (b, h, i, j) of stream s is kept (at the stream's position i + row0, j + col0,
/// sequence-head slot b * hq + h + bh0).
FLATATTN_HD bool dropout_keep(const DropoutStream& s, int b, int h, int i, int j) {
  return dropout_word(dropout_block(s.k0, s.k1, s.c3, s.hq, b, h + s.bh0, i + s.row0, j + s.col0), j) >= s.threshold;
}

}  // namespace flatattn
