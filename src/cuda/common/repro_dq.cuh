// Deterministic dQ: reproducible summation by pre-rounding (Demmel and Nguyen, "Fast Reproducible
// Floating-Point Summation", ARITH 2013, Sec. 3 -- the one-bin/two-fold version).
//
// The backward's dQ_i is a sum over key blocks, added into one workspace row by many CTAs with fp32
// reductions. Those are not associative, so the arrival order shows in the result. Here every
// contribution x is split into two parts, each rounded to a fixed grid: hi to a multiple of u_hi, lo =
// x - hi (exact) to a multiple of u_lo. When every partial sum of the hi parts is a multiple of u_hi
// below 2^24 u_hi in magnitude (and the same for lo), every fp32 addition of them is exact -- so the two
// sums are the same bits in any order, and dQ = hi + lo is rounded once at the end. Both parts go into
// one 16-byte reduction with the neighbouring column's (red.global.add.v4.f32 on sm_90: as many
// reductions as the default mode's v2), so no ordering across CTAs, no semaphore, no wait.
//
// The grid comes from a bound on row i (written by the pre-pass, sm80/bwd_rows.cuh): the accumulator
// holds sum_j dS_ij K_j with dS_ij = P_ij (dP_ij - D_i) (times softcap's tanh' <= 1), sum_j P_ij = 1 and
// |dP_ij| <= |dO_i| |V_j| (Cauchy-Schwarz), so the absolute values of all of row i's terms sum to at most
//   B_i = max|K| (|dO_i| max_j |V_j| + |D_i|),
// doubled for the 16-bit rounding of dS and the exp2 approximation of P. With 2^E > 2 B_i:
// u_hi = 2^(E - 22) (partial sums stay below 2^(E + 2) = 2^24 u_hi) and u_lo = 2^(E + k - 46) for at most
// 2^k contributions (k >= 1: the key blocks). The result is within 2^(E + 2k - 47) of the exact sum:
// for N = 8k (k = 6), 2^-34 of the bound, finer than fp32 accumulation for every element above about
// 2^-10 of its row's bound. Rounding uses the add-and-subtract of 1.5 * 2^23 u (valid for |x| <= 2^22 u).
// A contribution with |x| >= 2^E (an LSE that does not belong to Q and K) or a row whose bound is not
// finite (NaN/Inf inputs) or beyond 2^125 is made NaN, so that row of dQ is NaN rather than wrong.
// Global fp32 reductions flush subnormals; the grids are clamped so that every nonzero part is normal.
//
// Why this form (H100, N = 8k, D = 128; bench/results/gpu-bwd-det-experiments-h100.md): the main
// kernel's dQ reductions are its limit (6.7 ms with them, 4.9 ms without; the split arithmetic here
// costs < 1%); the 16-byte reductions touch twice the default's L2 sectors (+20% main kernel). Tried
// and dropped: int32 fixed point with sector-dense 4-byte reductions (default's sectors and bytes,
// twice its instructions: +36-40% -- worse; commit 89b34d6, branch detint32) and 2-CTA clusters adding their dQ tiles
// in distributed shared memory first (half the reductions, but coupling the two CTAs every step made
// the default mode 10-24% and this one 4-17% slower; commit b82eeb3, branch pairdq).
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

/// Contributions per dQ element <= 2^k (k >= 1): the number of key blocks.
FLATATTN_DEVICE int repro_k(int n_n_blocks) { return max(1, 32 - __clz(max(n_n_blocks - 1, 1))); }

/// u_hi of one row from its bound B_i (before doubling); NaN when the bound is not finite or too large.
FLATATTN_DEVICE float repro_unit(float bound) {
  if (!(bound <= 0x1p124f)) return __int_as_float(0x7fffffff);
  int e = 0;
  frexpf(2.f * bound, &e);  // 2 B_i < 2^e (e = 0 for a zero bound)
  return ldexpf(1.f, max(e, -79) - 22);
}

/// The rounding constants of one row: x -> hi, lo on their grids, |x| < 2^E = limit.
struct ReproRow {
  float c_hi = 0.f, c_lo = 0.f, limit = 0.f;
  ReproRow() = default;
  FLATATTN_DEVICE ReproRow(float u_hi, int k) {
    c_hi = u_hi * 0x1.8p23f;                      // 1.5 * 2^23 * u_hi
    c_lo = u_hi * ldexpf(0x1.8p23f, k - 24);      // 1.5 * 2^23 * u_lo, u_lo = u_hi * 2^(k - 24)
    limit = u_hi * 0x1p22f;                       // 2^E
  }
  /// x -> (hi, lo); NaN for an out-of-range or non-finite x (or a NaN row).
  FLATATTN_DEVICE float2 split(float x) const {
    const float xs = fabsf(x) < limit ? x : __int_as_float(0x7fffffff);
    const float hi = __fsub_rn(__fadd_rn(xs, c_hi), c_hi);
    const float lo = __fsub_rn(__fadd_rn(__fsub_rn(xs, hi), c_lo), c_lo);
    return make_float2(hi, lo);
  }
};

/// a[0..3] += the split parts of columns c and c + 1 (a 16-byte aligned (hi, lo, hi, lo) group).
FLATATTN_DEVICE void repro_add2(float* a, const ReproRow& r, float x, float y) {
  const float2 px = r.split(x), py = r.split(y);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(a), "f"(px.x), "f"(px.y), "f"(py.x),
               "f"(py.y)
               : "memory");
#else
  atomicAdd(a, px.x);
  atomicAdd(a + 1, px.y);
  atomicAdd(a + 2, py.x);
  atomicAdd(a + 3, py.y);
#endif
}

/// The backward kernels' dQ additions in either mode: for_each_pair(add2) calls add2(element offset,
/// row slot, x, y) for each of a thread's column pairs; add2 is the fp32 reduction (default) or the
/// pre-rounded one with the grid of that row slot, unit(slot) = its u_hi (deterministic). The grids are
/// built per call, so no register holds them across the kernel's loop.
template <int Slots, class ForEachPair, class Unit>
FLATATTN_DEVICE void add_dq_pairs(const BwdParams& p, ForEachPair&& for_each_pair, Unit&& unit) {
  if (p.deterministic) {
    const int k = repro_k(p.n_n_blocks);
    ReproRow rr[Slots];
#pragma unroll
    for (int slot = 0; slot < Slots; ++slot) rr[slot] = ReproRow(unit(slot), k);
    for_each_pair([&](std::int64_t o, int slot, float x, float y) { repro_add2(p.dq_accum + 2 * o, rr[slot], x, y); });
  } else {
    for_each_pair([&](std::int64_t o, int, float x, float y) { red_add2(p.dq_accum + o, x, y); });
  }
}

}  // namespace flatattn::cuda
