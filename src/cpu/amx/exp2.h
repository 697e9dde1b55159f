// 2^t on 16 fp32 lanes for the bf16 forward's softmax (src/cpu/amx/softmax.cc, src/cpu/amx/pipeline.cc).
// AVX-512F/DQ intrinsics: include only from the translation units compiled with those flags (src/cpu/amx/).
//
// 2^t = 2^f 2^floor(t) with f = t - floor(t) in [0, 1): VREDUCEPS gives f in one instruction, a degree-5
// polynomial gives 2^f (least-squares fit of the relative error on [0, 1), ours: max relative error 2.4e-7 in
// fp32, about 2 ulp), and VSCALEFPS multiplies by 2^floor(t) itself (it floors its second operand), exactly.
// t = -inf gives exactly 0 (VREDUCEPS returns 0 for an infinity, VSCALEFPS by 2^-inf gives 0), so masked
// logits need no clamp; t far below -126 gives 0 or a denormal. One instruction fewer than rounding to the
// nearest integer, subtracting and scaling by the rounded value, and no clamp: 8 operations per 16 lanes.
#pragma once

#include <immintrin.h>

namespace flatattn::cpu {

inline __m512 exp2_ps(__m512 t) {  // t <= ~0 here (logits minus their row max, in log2 units)
  const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_set1_ps(1.8753778465e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.9872486828e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5835982329e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4014648505e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9315474023e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.9999983413e-1f));
  return _mm512_scalef_ps(p, t);
}

}  // namespace flatattn::cpu
