// Deterministic dQ accumulation in 64-bit fixed point.
//
// The backward's dQ_i is a sum over key blocks, added into one workspace row by many CTAs. fp32
// additions are not associative, so atomics in arrival order give run-to-run differences. Integer
// addition is associative: every contribution x is scaled by a power of two 2^e, rounded to the nearest
// integer (cvt.rni.s64.f32) and added with a 64-bit integer reduction, so the sum is the same bits in
// any order -- no ordering across CTAs, no semaphores, no waits. The conversion pass turns the sum back
// into float (times 2^-e and the softmax scale).
//
// Range. The accumulator holds dQ / scale = sum_j dS_ij K_j with dS_ij = P_ij (dP_ij - D_i) (times
// softcap's tanh' <= 1). With sum_j P_ij = 1 (the recomputed probabilities; up to exp2 rounding) and
// |dP_ij| = |dO_i . V_j| <= |dO_i| |V_j| (Cauchy-Schwarz), every partial sum over any subset of keys obeys
//   |sum| <= B = max|K| * (max_i |dO_i| * max_j |V_j| + max_i |D_i|),
// maxima over the whole call (bwd_bound_kernel for K and V, the pre-pass for dO and D_i). The exponent
// e puts B just under 2^60: the sum has 3 bits of headroom below 2^63 for the 16-bit rounding of dS and
// the exp2 approximation of P, and its resolution is B * 2^-60 -- finer than fp32's relative 2^-24 for
// every element within 2^36 of the bound. A contribution that is not finite or exceeds 2^62 after
// scaling (non-finite inputs, or an LSE that does not belong to Q and K) sets `bad`; the conversion pass
// then writes NaN for all of dQ instead of a wrapped sum.
#pragma once

#include <cfloat>
#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/bwd_params.h"

namespace flatattn::cuda {

/// *a = max(*a, v) for v >= 0 (NaN counts as +inf, so a NaN input makes the bound non-finite).
FLATATTN_DEVICE void atomic_max_nonneg(float* a, float v) {
  atomicMax(reinterpret_cast<int*>(a), __float_as_int(v != v ? __int_as_float(0x7f800000) : v));
}

/// Powers of two between fp32 and the fixed-point sums of one call.
struct FixedScale {
  float to_fixed = 0.f;    ///< 2^e
  float from_fixed = 0.f;  ///< 2^-e
  bool finite = false;     ///< B was finite (otherwise dQ is NaN)

  FLATATTN_DEVICE explicit FixedScale(const DqBound& b) {
    const float bound = b.k_abs * fmaf(b.do_norm, b.v_norm, b.dsum_abs);
    finite = bound <= FLT_MAX;
    int k = 0;
    frexpf(finite ? bound : 1.f, &k);  // bound < 2^k (0 for a zero bound)
    const int e = max(-120, min(120, 60 - k));
    to_fixed = ldexpf(1.f, e);
    from_fixed = ldexpf(1.f, -e);
  }
};

/// The deterministic counterpart of red_add2: a[0] += x, a[1] += y as 64-bit fixed point (x * to_fixed
/// rounded to nearest even); bad |= either is not finite or beyond 2^62.
FLATATTN_DEVICE void fixed_add2(unsigned long long* a, float x, float y, float to_fixed, bool& bad) {
  const float sx = x * to_fixed, sy = y * to_fixed;
  bad |= !(fabsf(sx) <= 0x1p62f) || !(fabsf(sy) <= 0x1p62f);
  const long long ix = __float2ll_rn(sx), iy = __float2ll_rn(sy);
  asm volatile("red.global.add.u64 [%0], %1;\n" ::"l"(a), "l"(ix) : "memory");
  asm volatile("red.global.add.u64 [%0], %1;\n" ::"l"(a + 1), "l"(iy) : "memory");
}

}  // namespace flatattn::cuda
