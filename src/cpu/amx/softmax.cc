// The bf16 forward's softmax step on AVX-512 (amx.h, bf16_softmax_step): one sweep for the row max, one
// for exp, the row sum and the bf16 P operand, so a logit block is read twice and P written once (the
// fp32 path's separate scale, max, exp-and-sum and conversion sweeps read it four times and write it
// three times). Compiled, like kernels.cc, with -mavx512f -mavx512bw -mavx512dq -mavx512bf16; both bf16
// paths (AMX, AVX512-BF16) call it, only after forward_matmul() chose one of them.
//
// e^x = 2^(x log2 e) by exp2_ps (src/cpu/amx/exp2.h). 10 vector operations per 16 logits, the exp, sum and
// bf16 conversion included.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "src/cpu/amx/exp2.h"

namespace flatattn::cpu {

void bf16_softmax_step(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t lds, float scale, float* m,
                       float* l, float* o, std::int64_t ldo, std::int64_t dp, std::uint16_t* p, std::int64_t ldp) {
  constexpr float kLog2e = 1.4426950408889634f;
  const float ninf = -std::numeric_limits<float>::infinity();
  const __m512 c = _mm512_set1_ps(scale * kLog2e);
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* r = s + i * lds;
    __m512 mx0 = _mm512_set1_ps(ninf), mx1 = mx0;
    for (std::int64_t j = 0; j < ncols; j += 32) {
      mx0 = _mm512_max_ps(mx0, _mm512_loadu_ps(r + j));
      mx1 = _mm512_max_ps(mx1, _mm512_loadu_ps(r + j + 16));
    }
    const float m_old = m[i];
    const float m_new = std::max(m_old, scale * _mm512_reduce_max_ps(_mm512_max_ps(mx0, mx1)));
    const float shift = m_new == ninf ? 0.f : m_new;  // all masked so far: P = e^-inf = 0
    const __m512 b = _mm512_set1_ps(-shift * kLog2e);
    __m512 sum0 = _mm512_setzero_ps(), sum1 = sum0;
    std::uint16_t* pr = p + i * ldp;
    for (std::int64_t j = 0; j < ncols; j += 32) {
      const __m512 e0 = exp2_ps(_mm512_fmadd_ps(_mm512_loadu_ps(r + j), c, b));
      const __m512 e1 = exp2_ps(_mm512_fmadd_ps(_mm512_loadu_ps(r + j + 16), c, b));
      sum0 = _mm512_add_ps(sum0, e0);
      sum1 = _mm512_add_ps(sum1, e1);
      _mm512_storeu_si512(pr + j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));  // nearest even, as amx_to_bf16
    }
    const float add = _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
    if (l[i] == 0.f || m_new == m_old) {  // nothing accumulated yet (O = 0), or the max held: no rescale
      l[i] = l[i] + add;
    } else {
      const float alpha = std::exp(m_old - m_new);
      l[i] = l[i] * alpha + add;
      float* orow = o + i * ldo;
      const __m512 a = _mm512_set1_ps(alpha);
      for (std::int64_t n = 0; n < dp; n += 16) _mm512_storeu_ps(orow + n, _mm512_mul_ps(_mm512_loadu_ps(orow + n), a));
    }
    m[i] = m_new;
  }
}

}  // namespace flatattn::cpu

namespace flatattn::cpu {

void bf16_store_row(const float* src, std::int64_t d, float mul, std::uint16_t* dst) {
  const __m512 f = _mm512_set1_ps(mul);
  for (std::int64_t i = 0; i < d; i += 16) {
    const __mmask16 k = d - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - i)) - 1);
    const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, src + i), f);
    const __m512i u = _mm512_castps_si512(x);
    const __m512i hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)))), 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    _mm256_mask_storeu_epi16(dst + i, k, _mm512_cvtepi32_epi16(r));
  }
}

}  // namespace flatattn::cpu
