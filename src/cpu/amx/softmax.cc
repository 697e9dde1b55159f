// The bf16 forward's softmax step on AVX-512 (amx.h, bf16_softmax_step): one sweep for the row max, one
// for exp, the row sum and the bf16 P operand, so a logit block is read twice and P written once (the
// fp32 path's separate scale, max, exp-and-sum and conversion sweeps read it four times and write it
// three times). Compiled, like kernels.cc, with -mavx512f -mavx512bw -mavx512dq -mavx512bf16; both bf16
// paths (AMX, AVX512-BF16) call it, only after forward_matmul() chose one of them.
//
// e^x = 2^(x log2 e) by exp2_ps (src/cpu/exp2.h; degree 4 when P is one bf16 piece, degree 5 for the split
// pieces). 9 vector operations per 16 logits (10 with degree 5), the exp, sum and bf16 conversion included;
// the per-row work (the two horizontal reductions, m and l) is done for 16 rows at once (reduce16 below),
// which at block_n = 256 was about a fifth of the step.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "src/cpu/exp2.h"

namespace flatattn::cpu {

namespace {

// Lane r of the result = op over the 16 lanes of v[r], for 16 vectors at once (a reduction tree of 15 lane
// shuffles and 15 ops, against 16 separate horizontal reductions of 4 shuffles and 4 ops each, all serial).
template <typename Op>
inline __m512 reduce16(const __m512 v[16], Op op) {
  __m512 t[8], w[4], z[2];
  for (int k = 0; k < 8; ++k)  // 128-bit blocks [a0+a2, a1+a3, b0+b2, b1+b3] of rows 2k, 2k+1
    t[k] = op(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44), _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
  for (int k = 0; k < 4; ++k)  // block j = 4 lanes of row 4k + j
    w[k] = op(_mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], 0x88), _mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], 0xDD));
  for (int k = 0; k < 2; ++k)  // block j = [2 lanes of row 8k + j, 2 lanes of row 8k + 4 + j]
    z[k] = op(_mm512_shuffle_ps(w[2 * k], w[2 * k + 1], 0x44), _mm512_shuffle_ps(w[2 * k], w[2 * k + 1], 0xEE));
  // block j, lane q = row 4q + j
  const __m512 f = op(_mm512_shuffle_ps(z[0], z[1], 0x88), _mm512_shuffle_ps(z[0], z[1], 0xDD));
  const __m512i idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);  // lane r <- 4 (r % 4) + r / 4
  return _mm512_permutexvar_ps(idx, f);
}

// bf16(x) (nearest even, as _mm512_cvtne2ps_pbh) widened back to fp32.
inline __m512 bf16_round(__m512 x) {
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(x);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Rows in groups of 16: the max sweeps of the group, one reduction tree for their 16 maxima, the exp sweeps,
// one tree for the 16 sums, and m and l updated as vectors; only a row whose O needs the rescale takes a
// scalar branch. kPieces > 1: P as that many bf16 pieces (SplitPolicy, amx.h), piece k at p + k * plane.
template <int kPieces>
void softmax_step(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t lds, float scale, float* m,
                  float* l, float* o, std::int64_t ldo, std::int64_t dp, std::uint16_t* p, std::int64_t ldp,
                  std::int64_t plane) {
  constexpr float kLog2e = 1.4426950408889634f;
  const float ninf = -std::numeric_limits<float>::infinity();
  const __m512 c = _mm512_set1_ps(scale * kLog2e);
  const auto vmax = [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); };
  const auto vadd = [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); };
  for (std::int64_t i0 = 0; i0 < rows; i0 += 16) {
    const int nr = static_cast<int>(std::min<std::int64_t>(16, rows - i0));
    const __mmask16 live = static_cast<__mmask16>((1u << nr) - 1);
    __m512 acc[16];
    for (int r = 0; r < 16; ++r) acc[r] = _mm512_set1_ps(ninf);
    for (int r = 0; r < nr; ++r) {
      const float* row = s + (i0 + r) * lds;
      __m512 mx0 = acc[r], mx1 = mx0;
      for (std::int64_t j = 0; j < ncols; j += 32) {
        mx0 = _mm512_max_ps(mx0, _mm512_loadu_ps(row + j));
        mx1 = _mm512_max_ps(mx1, _mm512_loadu_ps(row + j + 16));
      }
      acc[r] = _mm512_max_ps(mx0, mx1);
    }
    const __m512 m_old = _mm512_mask_loadu_ps(_mm512_set1_ps(ninf), live, m + i0);
    const __m512 m_new = _mm512_max_ps(m_old, _mm512_mul_ps(reduce16(acc, vmax), _mm512_set1_ps(scale)));
    // all masked so far (m_new = -inf): shift 0, so P = e^-inf = 0
    const __m512 shift = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m_new, _mm512_set1_ps(ninf), _CMP_EQ_OQ), m_new,
                                              _mm512_setzero_ps());
    alignas(64) float bias[16];
    _mm512_store_ps(bias, _mm512_mul_ps(shift, _mm512_set1_ps(-kLog2e)));
    for (int r = 0; r < nr; ++r) {
      const float* row = s + (i0 + r) * lds;
      const __m512 b = _mm512_set1_ps(bias[r]);
      __m512 sum0 = _mm512_setzero_ps(), sum1 = sum0;
      std::uint16_t* pr = p + (i0 + r) * ldp;
      for (std::int64_t j = 0; j < ncols; j += 32) {
        const __m512 e0 = exp2_ps<kPieces == 1>(_mm512_fmadd_ps(_mm512_loadu_ps(row + j), c, b));
        const __m512 e1 = exp2_ps<kPieces == 1>(_mm512_fmadd_ps(_mm512_loadu_ps(row + j + 16), c, b));
        sum0 = _mm512_add_ps(sum0, e0);
        sum1 = _mm512_add_ps(sum1, e1);
        _mm512_storeu_si512(pr + j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));  // nearest even, as amx_to_bf16
        if constexpr (kPieces > 1) {  // e - bf16(e) is exact in fp32; its own bf16 is the next piece
          __m512 r0 = e0, r1 = e1;
          for (int k = 1; k < kPieces; ++k) {
            r0 = _mm512_sub_ps(r0, bf16_round(r0));
            r1 = _mm512_sub_ps(r1, bf16_round(r1));
            _mm512_storeu_si512(pr + k * plane + j, (__m512i)_mm512_cvtne2ps_pbh(r1, r0));
          }
        }
      }
      acc[r] = _mm512_add_ps(sum0, sum1);
    }
    for (int r = nr; r < 16; ++r) acc[r] = _mm512_setzero_ps();
    const __m512 add = reduce16(acc, vadd);
    const __m512 l_old = _mm512_maskz_loadu_ps(live, l + i0);
    // Rows with something accumulated (l > 0) whose max grew rescale O and l by e^(m_old - m_new); the others
    // (O still 0, or the max held) add.
    const __mmask16 grow = _mm512_cmp_ps_mask(l_old, _mm512_setzero_ps(), _CMP_NEQ_OQ) &
                           _mm512_cmp_ps_mask(m_new, m_old, _CMP_NEQ_OQ) & live;
    alignas(64) float alpha[16];
    _mm512_store_ps(alpha, _mm512_set1_ps(1.f));
    if (grow) {
      alignas(64) float mo[16], mn[16];
      _mm512_store_ps(mo, m_old);
      _mm512_store_ps(mn, m_new);
      for (int r = 0; r < nr; ++r) {
        if (!((grow >> r) & 1)) continue;
        alpha[r] = std::exp(mo[r] - mn[r]);
        float* orow = o + (i0 + r) * ldo;
        const __m512 a = _mm512_set1_ps(alpha[r]);
        for (std::int64_t n = 0; n < dp; n += 16) _mm512_storeu_ps(orow + n, _mm512_mul_ps(_mm512_loadu_ps(orow + n), a));
      }
    }
    _mm512_mask_storeu_ps(l + i0, live, _mm512_fmadd_ps(l_old, _mm512_load_ps(alpha), add));
    _mm512_mask_storeu_ps(m + i0, live, m_new);
  }
}

}  // namespace

void bf16_softmax_step(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t lds, float scale, float* m,
                       float* l, float* o, std::int64_t ldo, std::int64_t dp, std::uint16_t* p, std::int64_t ldp,
                       int pieces, std::int64_t plane) {
  if (pieces == 3) return softmax_step<3>(s, rows, ncols, lds, scale, m, l, o, ldo, dp, p, ldp, plane);
  if (pieces == 2) return softmax_step<2>(s, rows, ncols, lds, scale, m, l, o, ldo, dp, p, ldp, plane);
  softmax_step<1>(s, rows, ncols, lds, scale, m, l, o, ldo, dp, p, ldp, plane);
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
