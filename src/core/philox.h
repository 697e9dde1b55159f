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
//   counter = ((j >> 6) * 4 + ((j >> 1) & 3), i, b * Hq + h, offset_lo32)
// The 128 output bits are 16 bytes, byte k = (out[k >> 2] >> (8 (k & 3))) & 0xff; element (i, j) reads byte
// k = ((j >> 3) & 7) * 2 + (j & 1), and is kept iff byte >= t, t = p * 256 rounded to nearest (ties to even).
// So one call serves the 16 keys (j & ~63) + 2 ((j >> 1) & 3) + 8 w + e (w < 8, e < 2) of one query row.
// Why this mapping: in the m16n8 accumulator layout of the CUDA kernels (and wgmma's m64nN, the same per
// warp) a thread holds, for one row, the columns 8 nt + 2 (lane & 3) + {0, 1}; eight consecutive n-tiles (64
// keys) then read all 16 bytes of one Philox call, so a query-major kernel needs one call per 16 elements and
// nothing is computed twice (FlashAttention-2's count). The key-major sm90 backward computes its block's calls
// cooperatively in this grouping and passes the keep bits through shared memory (sm90/bwd_kernel.cuh).
// Keep probability 1 - t / 256: p is quantized to 1/256 (|error| <= 2^-9), as FlashAttention-2 quantizes it
// (an 8-bit threshold); the kept entries are still scaled by 1 / (1 - p) with the caller's p, so the
// expectation of a kept-and-scaled entry is P (1 - t / 256) / (1 - p), within 2^-9 / (1 - p) of P. This is not
// FlashAttention-2's stream (its counter layout differs): a mask cannot be carried between the two libraries.
// Until issue 15's second round the stream drew 8 elements per call with 16-bit thresholds (32-key groups):
// masks of that version differ from this one's.
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

/// Keys per Philox group of a row: one call serves 16 of the 64 keys (j & ~63) .. (j | 63), those of one
/// (j >> 1) & 3. A call's sub-block that starts at a key column col0 of the whole sequence (Options::dropout_col0,
/// context parallelism) must have col0 % kDropoutColAlign == 0, so that each element reads the same byte of the
/// same call as in the whole sequence (validated; src/cp and python/flatattn/distributed cut key blocks there).
inline constexpr int kDropoutColAlign = 64;

/// The threshold t = round(p * 256) of keep probability 1 - t / 256, for p in [0, 1) (t in [0, 256]; 256: all
/// dropped, for p >= 255.5 / 256).
inline std::uint32_t dropout_threshold(double p) {
  const double t = std::nearbyint(p * 256.0);
  return t <= 0 ? 0u : t >= 256.0 ? 256u : static_cast<std::uint32_t>(t);
}

/// The stream's per-call constants: Philox key, the counter's last word, the threshold and Hq; row0, col0: the
/// position of the call's first query row and key column in the sequence whose mask it reproduces (context
/// parallelism, Options::dropout_row0/col0; 0 otherwise): element (i, j) of the call is element (i + row0, j + col0)
/// of the stream. col0 % kDropoutColAlign == 0 (validated), so the byte an element reads, ((j >> 3) & 7) * 2 +
/// (j & 1), and its call's (j >> 1) & 3 are unchanged.
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

/// The Philox output that serves element (i, j) of (b, h), and the 15 other elements of its group
/// (keys (j & ~63) + ((j >> 1) & 3) * 2 + 8 w + e, w < 8, e < 2).
FLATATTN_HD Philox4 dropout_block(std::uint32_t k0, std::uint32_t k1, std::uint32_t c3, std::int32_t hq, int b, int h,
                                  int i, int j) {
  const Philox4 ctr{{static_cast<std::uint32_t>(j >> 6) * 4u + ((static_cast<std::uint32_t>(j) >> 1) & 3u),
                     static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(b * hq + h), c3}};
  return philox4x32<10>(ctr, k0, k1);
}

/// Byte k (0..15) of a call's output. The 32-bit word is selected, not indexed: a runtime index into o would put
/// it in local memory on the GPU (a compile-time k folds to one word and one shift).
FLATATTN_HD std::uint32_t dropout_byte_at(const Philox4& o, int k) {
  const int q = (k >> 2) & 3;
  const std::uint32_t w = (q & 2) ? ((q & 1) ? o.x[3] : o.x[2]) : ((q & 1) ? o.x[1] : o.x[0]);
  return (w >> (8 * (k & 3))) & 0xffu;
}

/// The byte of its group's call that element j reads: k = ((j >> 3) & 7) * 2 + (j & 1).
FLATATTN_HD std::uint32_t dropout_byte(const Philox4& o, int j) {
  return dropout_byte_at(o, ((j >> 3) & 7) * 2 + (j & 1));
}

/// The per-call constants of dropout_keep_msb for threshold t in [0, 256]: with k = 255 - t, keep (byte >= t) is the
/// carry out of byte + k + 1. `low` holds (k & 0x7f) + 1 in every byte, `msb` holds k & 0x80 in every byte; t = 256
/// (all dropped) takes low = msb = 0, whose carry is never set.
struct DropoutSwar {
  std::uint32_t low = 0, msb = 0;
};

FLATATTN_HD DropoutSwar dropout_swar(std::uint32_t threshold) {
  if (threshold >= 256u) return {0u, 0u};
  const std::uint32_t k = 255u - threshold;
  return {((k & 0x7fu) + 1u) * 0x01010101u, (k & 0x80u) * 0x01010101u};
}

/// The keep decisions of the 4 bytes of one Philox word as the top bit of each byte (the other bits are garbage):
/// bit 8 m + 7 is set iff byte m >= threshold. Per byte, (x & 0x7f) + (k & 0x7f) + 1 <= 255 stays inside its byte
/// and its bit 7 is the carry into bit 7 of byte + k + 1; the carry out is the majority of that carry and the two top
/// bits. Three integer operations per 4 elements (the CUDA forward spreads each top bit over a 16-bit lane with one
/// byte permute and masks packed P with it, src/cuda/common/score.cuh).
FLATATTN_HD std::uint32_t dropout_keep_msb(std::uint32_t x, DropoutSwar s) {
  const std::uint32_t low = (x & 0x7f7f7f7fu) + s.low;
  return (x & s.msb) | (x & low) | (s.msb & low);
}

/// The keep bits of a whole call: bit k is (byte k >= threshold), threshold in [0, 256]. SWAR, host and device
/// alike: dropout_keep_msb puts word m's four decisions in bits 7, 15, 23 and 31; one multiply by
/// 2^21 + 2^14 + 2^7 + 1 gathers them into bits 28..31 (the partial products of the four bits land on distinct
/// positions, so nothing carries into 28..31), which move to bits 4 m .. 4 m + 3.
FLATATTN_HD std::uint32_t dropout_keep_bits(const Philox4& o, std::uint32_t threshold) {
  const DropoutSwar sw = dropout_swar(threshold);
  std::uint32_t bits = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int m = 0; m < 4; ++m) {
    const std::uint32_t top = (dropout_keep_msb(o.x[m], sw) & 0x80808080u) * 0x00204081u;  // nibble at 28..31
    bits |= (top >> (28 - 4 * m)) & (0xfu << (4 * m));
  }
  return bits;
}

/// THE definition: whether element (b, h, i, j) of stream s is kept (at the stream's position i + row0, j + col0,
/// sequence-head slot b * hq + h + bh0).
FLATATTN_HD bool dropout_keep(const DropoutStream& s, int b, int h, int i, int j) {
  return dropout_byte(dropout_block(s.k0, s.k1, s.c3, s.hq, b, h + s.bh0, i + s.row0, j + s.col0), j) >= s.threshold;
}

}  // namespace flatattn
