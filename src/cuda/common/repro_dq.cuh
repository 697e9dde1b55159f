// Deterministic dQ: reproducible summation in fixed point (the idea of Demmel and Nguyen, "Fast
// Reproducible Floating-Point Summation", ARITH 2013, Sec. 3: round every term to one grid fixed per
// sum, then the additions are exact and their order does not show -- here the grid's sums are integers).
//
// The backward's dQ_i is a sum over key blocks, added into one workspace row by many CTAs. fp32
// reductions are not associative, so the arrival order would show in the result. Here every term x of
// row i is rounded to an integer multiple of the row's unit u_i, and the two integers of a column pair
// (c, c + 1) go into one 64-bit integer reduction as x_c + 2^32 x_(c+1) (red.global.add.u64). Integer
// addition is associative, so the sum is the same bits in any order; while each column's own sum stays
// inside int32, the low word holds sum x_c exactly and the high word, after removing the low word's
// borrow or carry, sum x_(c+1) (decoded and rounded once in bwd_convert_kernel). So the deterministic
// mode issues the default mode's reductions: one 8-byte reduction per column pair, the same bytes and
// L2 sectors, 4 bytes of workspace per element.
//
// The unit comes from a bound on row i (the pre-pass, common/bwd_rows.cuh): the accumulator holds
// sum_j dS_ij K_j with dS_ij = P_ij (dP_ij - D_i) (times the score's derivative, <= 1 for every built score), sum_j P_ij = 1 and
// |dP_ij| <= |dO_i| |V_j| (Cauchy-Schwarz; with dropout dP_ij = Z_ij (dO V^T)_ij / (1 - p), one more factor
// 1 / (1 - p)), so the absolute values of all of row i's terms sum to at most
//   B_i = max|K| (|dO_i| max_j |V_j| / (1 - p) + |D_i|)   (p = 0 without dropout),
// doubled for the 16-bit rounding of dS and the exp2 approximation of P. With 2^E > 2 B_i, u_i = 2^(E - 30):
// every term and every partial sum of a column is below 2^E = 2^30 u_i, inside int32. Each term is off
// by at most u_i / 2, so with at most 2^k terms (the key blocks) the result is within
// 2^(E + k - 31) <= 2^(k - 29) B_i of the exact sum: 2^-23 of the row's bound at N = 8k (k = 6), 2^-19
// at N = 128k -- below the bf16/fp16 rounding of the stored dQ for every element above 2^-14 of its
// row's bound.
// A term with |x| >= 2^E (an LSE that does not belong to Q and K, or NaN/Inf) marks the row: its unit
// becomes NaN, so the conversion writes a NaN row (as the default mode's NaN sum would); a row whose
// bound is not finite or beyond 2^124 starts with a NaN unit.
//
// Why this form (H100, N = 8k, D = 128; bench/results/gpu-bwd-det-experiments-h100.md): the main
// kernel's dQ reductions are its limit, and their L2 cost follows the reduction instructions and the
// sectors they touch. Tried before: fp32 (hi, lo) parts pre-rounded to two grids in one 16-byte
// reduction (the default's instructions, twice its sectors: +15-17% at N = 8k, D = 128; commit
// 13923ed), int32 terms with 4-byte reductions (the default's sectors, twice its instructions: +36-44%;
// commit 89b34d6, branch detint32) and 2-CTA clusters adding their dQ tiles in distributed shared
// memory first (coupling the two CTAs every step made the default mode 10-24% slower; commit b82eeb3,
// branch pairdq).
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/bwd_params.h"
#include "src/cuda/common/red_add.cuh"

namespace flatattn::cuda {

/// *a = max(*a, v) for v >= 0 (NaN counts as +inf, so a NaN input makes the bound non-finite).
FLATATTN_DEVICE void atomic_max_nonneg(float* a, float v) {
  atomicMax(reinterpret_cast<int*>(a), __float_as_int(v != v ? __int_as_float(0x7f800000) : v));
}

/// u_i of one row from its bound B_i (before doubling); NaN when the bound is not finite or too large.
/// Between 2^-126 and 2^96: normal, with a normal inverse.
FLATATTN_DEVICE float repro_unit(float bound) {
  if (!(bound <= 0x1p124f)) return __int_as_float(0x7fffffff);
  int e = 0;
  frexpf(2.f * bound, &e);  // 2 B_i < 2^e (e = 0 for a zero bound)
  return ldexpf(1.f, max(e, -96) - 30);
}

/// One row's conversion x -> round(x / u_i) (exact scaling by a power of two, then round to nearest).
struct ReproRow {
  float inv = 0.f;  ///< 1 / u_i (NaN for a NaN row)
  ReproRow() = default;
  /// unit: a normal power of two (repro_unit; exact inverse), 0 for a row past nq (never added), or NaN.
  /// (The exponent-flip inverse spilled more registers in the sm80 kernel at D = 128 than the division.)
  FLATATTN_DEVICE explicit ReproRow(float unit) : inv(1.f / unit) {}
  /// The term as an integer; `bad` set when it is out of range or not finite (or the row is NaN).
  FLATATTN_DEVICE int to_int(float x, bool& bad) const {
    const float y = x * inv;
    bad |= !(fabsf(y) < 0x1p30f);
    return __float2int_rn(y);
  }
};

/// The pair (x, y) of int32 terms as one 64-bit addend: x + 2^32 y modulo 2^64.
FLATATTN_DEVICE unsigned long long repro_pack(int x, int y) {
  return static_cast<unsigned long long>(static_cast<long long>(x)) +
         (static_cast<unsigned long long>(static_cast<unsigned>(y)) << 32);
}

/// The column sums (sum x, sum y) back from the 64-bit sum of repro_pack(x, y): exact while both
/// sums lie in int32 (the low word is sum x; removing it leaves 2^32 sum y).
FLATATTN_DEVICE int2 repro_unpack(unsigned long long s) {
  const int x = static_cast<int>(static_cast<unsigned>(s));
  const unsigned long long rest = s - static_cast<unsigned long long>(static_cast<long long>(x));
  return make_int2(x, static_cast<int>(static_cast<unsigned>(rest >> 32)));
}

/// *a += v (64-bit integer reduction, relaxed, gpu scope); a is 8-byte aligned.
FLATATTN_DEVICE void red_add_u64(unsigned long long* a, unsigned long long v) {
  asm volatile("red.global.add.u64 [%0], %1;\n" ::"l"(a), "l"(v) : "memory");
}

/// Marks workspace row `row` NaN (a term out of range; see above). Every run marks the same rows.
FLATATTN_DEVICE void repro_mark_row(const BwdParams& p, std::int64_t row) { p.dq_unit[row] = __int_as_float(0x7fffffff); }

/// The backward kernels' dQ additions in either mode: for_each_pair(add2) calls add2(element offset,
/// row slot, x, y) for each of a thread's column pairs (offset even); add2 is the fp32 reduction
/// (default) or the fixed-point one with the unit of that row slot, unit(slot) = its u_i, row(slot) =
/// its workspace row (deterministic). The units are read per call, so no register holds them across
/// the kernel's loop.
template <int Slots, class ForEachPair, class Unit, class Row>
FLATATTN_DEVICE void add_dq_pairs(const BwdParams& p, ForEachPair&& for_each_pair, Unit&& unit, Row&& row) {
  if (p.deterministic) {
    ReproRow rr[Slots];
#pragma unroll
    for (int slot = 0; slot < Slots; ++slot) rr[slot] = ReproRow(unit(slot));
    for_each_pair([&](std::int64_t o, int slot, float x, float y) {
      bool bad = false;
      const int ix = rr[slot].to_int(x, bad), iy = rr[slot].to_int(y, bad);
      if (bad) repro_mark_row(p, row(slot));
      red_add_u64(reinterpret_cast<unsigned long long*>(p.dq_accum + o), repro_pack(ix, iy));
    });
  } else {
    for_each_pair([&](std::int64_t o, int, float x, float y) { red_add2(p.dq_accum + o, x, y); });
  }
}

}  // namespace flatattn::cuda
