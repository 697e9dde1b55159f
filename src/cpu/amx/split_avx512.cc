// The row splitter of the split packers (SplitPolicy, amx.h; src/cpu/amx/split.cc) on AVX-512: 16 elements at a
// time, converted to fp32 (f16 by VCVTPH2PS, bf16 by a shift) and cut into bf16 pieces by VCVTNEPS2BF16 (nearest
// even, as float_to_bf16) and an exact subtraction. Compiled with the AMX kernels' flags; called only after
// forward_matmul() chose a bf16 path (those CPUs have AVX512F, BW and BF16).
#include <immintrin.h>

#include <cstdint>

#include "src/cpu/amx/split_row.h"

namespace flatattn::cpu {

namespace {

inline __m512 load16(const void* base, DType dt, std::int64_t at, __mmask16 k) {
  switch (dt) {
    case DType::f32:
      return _mm512_maskz_loadu_ps(k, static_cast<const float*>(base) + at);
    case DType::f16:
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, static_cast<const std::uint16_t*>(base) + at));
    default: {  // bf16
      const __m256i h = _mm256_maskz_loadu_epi16(k, static_cast<const std::uint16_t*>(base) + at);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
}

inline void pieces16(__m512 x, int pieces, std::int64_t ld, std::uint16_t* out, __mmask16 k) {
  for (int p = 0; p < pieces; ++p) {
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(x);
    _mm256_mask_storeu_epi16(out + p * ld, k, h);
    if (p + 1 == pieces) break;
    const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    const __mmask16 finite = _mm512_cmp_ps_mask(_mm512_sub_ps(hf, hf), _mm512_setzero_ps(), _CMP_EQ_OQ);
    x = _mm512_maskz_sub_ps(finite, x, hf);  // exact; 0 beyond a non-finite first piece
  }
}

}  // namespace

void split_row_avx512(const void* base, DType dt, std::int64_t at, std::int64_t d, int pieces, std::int64_t ld,
                      std::uint16_t* out) {
  for (std::int64_t e = 0; e < d; e += 16) {
    const __mmask16 k = d - e >= 16 ? __mmask16(0xffff) : __mmask16((1u << (d - e)) - 1);
    pieces16(load16(base, dt, at + e, k), pieces, ld, out + e, k);
  }
}

}  // namespace flatattn::cpu
