// The CPU engine's vector layer: one 16-lane fp32 vector type (GCC/Clang vector extensions) and the few
// operations the kernels need (load/store, exp, tanh, row max/sum).
//
// Vector extensions instead of intrinsics: with -march=native on an AVX-512 machine every `vf` is one
// zmm register and `c += a * b` is one vfmadd (the sources are compiled with -ffp-contract=fast); without
// it the compiler splits each `vf` into narrower registers, so the same code stays correct everywhere.
// Everything here is inline and internal to src/cpu (no `vf` crosses a library boundary).
#pragma once

#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include "src/cpu/exp2.h"  // exp2_poly_ps (with <immintrin.h>)
#endif

namespace flatattn::cpu::simd {

inline constexpr int kWidth = 16;  ///< fp32 lanes per vector

typedef float vf __attribute__((vector_size(64)));
typedef std::int32_t vi __attribute__((vector_size(64)));
typedef float vf_unaligned __attribute__((vector_size(64), aligned(4), may_alias));

#define FLATATTN_INLINE inline __attribute__((always_inline))

FLATATTN_INLINE vf load(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
FLATATTN_INLINE void store(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
FLATATTN_INLINE vf splat(float x) { return vf{} + x; }
FLATATTN_INLINE vf vmax(vf a, vf b) { return a > b ? a : b; }
FLATATTN_INLINE vf vmin(vf a, vf b) { return a < b ? a : b; }

/// Horizontal max / sum in a fixed lane order (results do not depend on anything but the inputs).
FLATATTN_INLINE float hmax(vf v) {
  float m = v[0];
  for (int i = 1; i < kWidth; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
FLATATTN_INLINE float hsum(vf v) {
  float s = 0.f;
  for (int i = 0; i < kWidth; ++i) s += v[i];
  return s;
}

/// e^x per lane, |relative error| <= 2 ulp for x in [-87, 88.37] (Cephes expf: x = n ln2 + r,
/// |r| <= ln2/2, a degree-6 polynomial for e^r, 2^n by adding n to the exponent field).
/// x < -87 (including -inf) gives exactly 0; x > 88.37 is clamped (finite, about 2.4e38).
FLATATTN_INLINE vf exp(vf x) {
  const vi underflow = x < splat(-87.0f);
  x = vmin(x, splat(88.3762626647949f));
  x = vmax(x, splat(-87.0f));
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to the nearest integer
  const vf t = x * 1.44269504088896341f + magic;
  const vf n = t - magic;
  const vi ni = (vi)t - (vi)magic;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const vi bits = (vi)p + (ni << 23);
  const vf e = (vf)bits;  // vector casts reinterpret the bits
  return underflow ? vf{} : e;
}

/// e^x per lane for the softmax's exponents x <= 0 (logits minus their row max or LSE; -inf gives exactly 0).
/// With AVX-512 as 2^t, t = x log2(e) (exp2_poly_ps of src/cpu/exp2.h): t = f + floor(t), f in [0, 1) by VREDUCEPS,
/// 2^f by a degree-6 polynomial with its constant term exactly 1 (kExp2Deg6), VSCALEFPS by 2^floor(t); 10 operations
/// per 16 lanes against exp()'s ~20 (its clamps and the two-constant ln 2 reduction).
/// - e^0 = 1 exactly: a row with one visible key gets P = 1, as the fp64 oracle does.
/// - The polynomial (a relative-error fit of ours) is within 1.0 ulp on [0, 1) evaluated in fp32.
/// - The rounding of t leaves e^x within about 1e-7 |x| relative: at most 1e-7 |x| e^x <= 3.7e-8 absolute,
///   negligible next to a row's sum.
/// Without AVX-512 it is exp(). x > 0 stays correct (no clamp is needed there either: the softmax's x exceed 0 by a
/// rounding at most). Tested through cpu::exp_nonpos_into (softmax_exp.h), which is built with the engine's flags.
FLATATTN_INLINE vf exp_nonpos(vf x) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  return (vf)exp2_poly_ps((__m512)(x * 1.44269504088896341f), kExp2Deg6);  // src/cpu/exp2.h
#else
  return exp(x);
#endif
}

/// tanh(x) per lane as sign(x) * (1 - 2 / (e^{2|x|} + 1)); absolute error <= ~1e-7, never NaN for finite x.
FLATATTN_INLINE vf tanh(vf x) {
  const vf a = vmax(x, -x);
  const vf e = exp(a + a);
  const vf t = 1.0f - 2.0f / (e + 1.0f);
  return x < vf{} ? -t : t;
}

/// max over n floats (n a multiple of kWidth).
FLATATTN_INLINE float row_max(const float* p, std::int64_t n) {
  vf m = splat(-__builtin_inff());
  for (std::int64_t j = 0; j < n; j += kWidth) m = vmax(m, load(p + j));
  return hmax(m);
}

/// p[j] = e^(p[j] - shift) in place, returns the sum (n a multiple of kWidth).
FLATATTN_INLINE float exp_shift_sum(float* p, std::int64_t n, float shift) {
  vf acc{};
  const vf s = splat(shift);
  for (std::int64_t j = 0; j < n; j += kWidth) {
    const vf e = exp_nonpos(load(p + j) - s);
    store(p + j, e);
    acc += e;
  }
  return hsum(acc);
}

/// p[j] *= a (n a multiple of kWidth).
FLATATTN_INLINE void scale_row(float* p, std::int64_t n, float a) {
  for (std::int64_t j = 0; j < n; j += kWidth) store(p + j, load(p + j) * a);
}

}  // namespace flatattn::cpu::simd
