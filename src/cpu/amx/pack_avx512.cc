// The AMX operand packers of amx.h on AVX-512 (pack_q_bf16, pack_k_vnni, pack_v_vnni): the K panels as 16 x 16
// transposes of 32-bit bf16 pairs (three shuffle stages: 32-bit and 64-bit unpacks inside 128-bit lanes, then a
// 4 x 4 transpose of the lanes), the V pairs as two rows widened to 32-bit lanes and merged, f32 sources rounded
// to bf16 in the integer lanes exactly as float_to_bf16 (src/core/half.h: nearest even, NaN kept quiet; no
// VCVTNEPS2BF16, which flushes denormal inputs). Bit for bit the scalar packers (pack.cc, the *_ref functions;
// tests/cpu/test_amx.cc compares them). Compiled with the AVX-512 flags of kernels.cc; both bf16 paths call
// these, only after forward_matmul() chose one of them (those CPUs have AVX512F and AVX512BW).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "src/cpu/amx/amx.h"

namespace flatattn::cpu {

namespace {

/// 16 f32 -> bf16 in the low half of each 32-bit lane (upper half 0), as float_to_bf16.
inline __m512i round_bf16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  // NaN (exponent all ones, mantissa not 0): the top half with the quiet bit set, not the rounded value.
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return r;
}

/// Mask of the first n (0..16) lanes.
inline __mmask16 first16(std::int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n < 0 ? 0 : n)) - 1u);
}
inline __mmask32 first32(std::int64_t n) {
  return n >= 32 ? static_cast<__mmask32>(0xffffffffu) : static_cast<__mmask32>((1u << (n < 0 ? 0 : n)) - 1u);
}

/// The 16 words (32 bf16: dims c0 .. c0+31, zero at and beyond d) of a row, as one vector of pairs.
template <class T>
inline __m512i words16(const T* row, std::int64_t c0, std::int64_t d) {
  if constexpr (sizeof(T) == 2) {
    return _mm512_maskz_loadu_epi16(first32(d - c0), row + c0);
  } else {
    const __m512i lo = round_bf16(_mm512_maskz_loadu_ps(first16(d - c0), row + c0));
    const __m512i hi = round_bf16(_mm512_maskz_loadu_ps(first16(d - c0 - 16), row + c0 + 16));
    // The low 16-bit halves of lo's and hi's lanes, in order: elements c0 .. c0+31 as bf16.
    const __m512i idx = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30, 28,
                                         26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_epi16(lo, idx, hi);
  }
}

/// The 16 bf16 of dims c0 .. c0+15 of a row (zero at and beyond d), each in the low half of a 32-bit lane.
template <class T>
inline __m512i halves16(const T* row, std::int64_t c0, std::int64_t d) {
  if constexpr (sizeof(T) == 2) {
    return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(first16(d - c0), row + c0));
  } else {
    return round_bf16(_mm512_maskz_loadu_ps(first16(d - c0), row + c0));
  }
}

/// r[i] (row i, 16 words) -> r[c] = column c (word c of rows 0..15).
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {  // 32-bit interleave of row pairs, inside 128-bit lanes
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  __m512i u[16];  // u[4g + c], 128-bit lane k: rows 4g .. 4g+3 of column 4k + c
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; ++c) {  // the 4 x 4 transpose of 128-bit lanes among u[c], u[4 + c], u[8 + c], u[12 + c]
    const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
    const __m512i v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
    r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);       // column c      (lane 0)
    r[4 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);   // column 4 + c  (lane 1)
    r[8 + c] = _mm512_shuffle_i32x4(v0, v2, 0xdd);   // column 8 + c  (lane 2)
    r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xdd);  // column 12 + c (lane 3)
  }
}

template <class T>
const T* row_of(const Rows& src, std::int64_t n) {
  return static_cast<const T*>(src.data) + src.offset(n);
}

template <class T>
void k_panels(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
              std::uint16_t* dst) {
  for (std::int64_t j0 = 0; j0 < count_pad; j0 += 16) {  // one panel of 16 keys
    std::uint16_t* panel = dst + j0 * kd;
    const std::int64_t keys = count - j0;  // real keys in this panel (<= 0: none)
    for (std::int64_t c0 = 0; c0 < kd; c0 += 32) {  // 16 words of each key -> 16 rows of 16 keys
      __m512i r[16];
      for (int j = 0; j < 16; ++j)
        r[j] = j < keys ? words16(row_of<T>(src, j0 + j), c0, d) : _mm512_setzero_si512();
      transpose16(r);
      std::uint16_t* out = panel + c0 * 16;  // word c0 / 2 + c of the panel at out + c * 32 bf16
      for (int c = 0; c < 16; ++c) _mm512_storeu_si512(out + c * 32, r[c]);
    }
  }
}

template <class T>
void v_pairs(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
             std::uint16_t* dst) {
  for (std::int64_t j = 0; j < count_pad; j += 2) {
    std::uint16_t* out = dst + j * dp;  // dp words: (key j, key j + 1) per dim
    const T* a = j < count ? row_of<T>(src, j) : nullptr;
    const T* b = j + 1 < count ? row_of<T>(src, j + 1) : nullptr;
    for (std::int64_t c0 = 0; c0 < dp; c0 += 16) {
      const __m512i lo = a != nullptr ? halves16(a, c0, d) : _mm512_setzero_si512();
      const __m512i hi = b != nullptr ? halves16(b, c0, d) : _mm512_setzero_si512();
      const __m512i w = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
      if (c0 + 16 <= dp) {
        _mm512_storeu_si512(out + 2 * c0, w);
      } else {
        _mm512_mask_storeu_epi32(out + 2 * c0, first16(dp - c0), w);
      }
    }
  }
}

void q_rows_f32(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                std::int64_t kd, std::uint16_t* dst) {
  for (std::int64_t i = 0; i < rows_pad; ++i) {
    std::uint16_t* out = dst + i * kd;
    if (i >= count) {
      std::memset(out, 0, sizeof(std::uint16_t) * kd);
      continue;
    }
    const float* r = row_of<float>(src, n0 + i);
    for (std::int64_t c0 = 0; c0 < kd; c0 += 32) _mm512_storeu_si512(out + c0, words16(r, c0, d));
  }
}

}  // namespace

void pack_q_bf16(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                 std::int64_t kd, std::uint16_t* dst) {
  if (src.dtype == DType::f32) {
    q_rows_f32(src, n0, count, rows_pad, d, kd, dst);
  } else {
    pack_q_bf16_ref(src, n0, count, rows_pad, d, kd, dst);  // bf16: row copies (memcpy)
  }
}

void pack_k_vnni(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
                 std::uint16_t* dst) {
  if (src.dtype == DType::f32) {
    k_panels<float>(src, count, count_pad, d, kd, dst);
  } else {
    k_panels<std::uint16_t>(src, count, count_pad, d, kd, dst);
  }
}

void pack_v_vnni(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                 std::uint16_t* dst) {
  if (src.dtype == DType::f32) {
    v_pairs<float>(src, count, count_pad, d, dp, dst);
  } else {
    v_pairs<std::uint16_t>(src, count, count_pad, d, dp, dst);
  }
}

}  // namespace flatattn::cpu
