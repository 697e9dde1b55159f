// 2^t on 16 fp32 lanes for the CPU softmax's exponents: the fp32 engine's simd::exp_nonpos (src/cpu/simd.h) and the
// bf16 forward's exp2_ps (src/cpu/amx/softmax.cc) share exp2_poly_ps and differ only in their polynomial.
// AVX-512F/DQ intrinsics: include only from code compiled with those flags (simd.h includes it under its AVX-512
// guard).
//
// 2^t = 2^f 2^floor(t) with f = t - floor(t) in [0, 1): VREDUCEPS gives f in one instruction, a polynomial gives
// 2^f, and VSCALEFPS multiplies by 2^floor(t) itself (it floors its second operand), exactly. t = -inf gives exactly
// 0 (VREDUCEPS returns 0 for an infinity, VSCALEFPS by 2^-inf gives 0), so masked logits need no clamp; t far below
// -126 gives 0 or a denormal. One instruction fewer than rounding to the nearest integer, subtracting and scaling by
// the rounded value, and no clamp.
#pragma once

#include <immintrin.h>

namespace flatattn::cpu {

/// 2^t with 2^f = c[0] f^(N-1) + ... + c[N-1] (Horner, highest degree first): N + 1 operations per 16 lanes.
template <int N>
inline __m512 exp2_poly_ps(__m512 t, const float (&c)[N]) {
  const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_set1_ps(c[0]);
#pragma GCC unroll 8
  for (int i = 1; i < N; ++i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c[i]));
  return _mm512_maskz_scalef_ps(static_cast<__mmask16>(0xFFFF), p, t);  // maskz: no undefined source
}

/// The bf16 forward's 2^f for the split pieces of P (SplitPolicy): degree 5, a least-squares fit of the relative
/// error on [0, 1) (ours): max relative error 2.4e-7 in fp32, about 2 ulp (its e^0 is 0.99999983).
inline constexpr float kExp2Deg5[6] = {1.8753778465e-3f, 8.9872486828e-3f, 5.5835982329e-2f,
                                       2.4014648505e-1f, 6.9315474023e-1f, 9.9999983413e-1f};

/// The bf16 forward's 2^f when P is one bf16 piece: degree 4, a relative-error minimax fit on [0, 1) (ours, Lawson's
/// iteration): max relative error 2.7e-6 in fp32, 700 times below the half-ulp of bf16 (2^-9) to which P is rounded
/// for the P V product, and below the LSE's 1e-5 (the row sum is of the fp32 values). One operation fewer than
/// degree 5 per 16 logits.
inline constexpr float kExp2Deg4[5] = {1.3534137048e-2f, 5.2011489868e-2f, 2.4144276977e-1f, 6.9300383329e-1f,
                                       1.0000026226e+0f};

/// The fp32 engine's 2^f: degree 6 with its constant term exactly 1 (e^0 = 1, as the fp64 oracle), within 1.0 ulp on
/// [0, 1) in fp32 (a relative-error fit of ours).
inline constexpr float kExp2Deg6[7] = {2.1612791170e-4f, 1.2468012283e-3f, 9.6754170954e-3f, 5.5485308170e-2f,
                                       2.4022929370e-1f, 6.9314706326e-1f, 1.0f};

/// The bf16 forward's 2^t (t <= ~0: logits minus their row max, in log2 units): 7 operations per 16 lanes, or 6 with
/// kOnePiece (P rounded to one bf16 piece, whose rounding dwarfs degree 4's error; SplitPolicy pieces keep degree 5).
template <bool kOnePiece>
inline __m512 exp2_ps(__m512 t) {
  if constexpr (kOnePiece) {
    return exp2_poly_ps(t, kExp2Deg4);
  } else {
    return exp2_poly_ps(t, kExp2Deg5);
  }
}

}  // namespace flatattn::cpu
