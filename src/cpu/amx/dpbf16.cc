// AVX512-BF16 kernels of the bf16 forward (VDPBF16PS, _mm512_dpbf16_ps: 16 fp32 lanes each += the dot
// product of a bf16 pair; Intel Architecture Instruction Set Extensions Programming Reference, ch. 2),
// for CPUs with AVX512-BF16 but no AMX. They read the AMX path's operand layouts (amx.h), which are
// already pair-interleaved as VDPBF16PS wants its second operand:
//   S = Q K^T: a K panel's pair row (i / 2) holds 16 keys x 2 dims = one zmm; the Q pair (i, i+1) of a
//              row is broadcast as one 32-bit word; 16 keys of a row per accumulator.
//   O += P V:  a V pair row (key pair j / 2) holds 16 dims x 2 keys per zmm; the P pair (j, j+1) of a
//              row is broadcast; 16 dims of a row per accumulator.
// This file alone is compiled with -mavx512f -mavx512bw -mavx512bf16 (only when the compiler accepts
// them: FLATATTN_HAVE_AVX512BF16, src/cpu/CMakeLists.txt) and runs only after forward_matmul() chose
// the avx512bf16 path.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace flatattn::cpu {

namespace {

inline __m512bh pair(const std::uint16_t* p) {  // bf16 elements p[0], p[1] broadcast to 16 lanes
  std::int32_t w;
  std::memcpy(&w, p, sizeof w);
  return (__m512bh)_mm512_set1_epi32(w);
}

inline __m512bh load_bh(const std::uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }

// R rows x 32 keys of S (two K panels).
template <int R>
void qk_block(const std::uint16_t* q, std::int64_t kd, const std::uint16_t* b0, float scale, float* s,
              std::int64_t lds) {
  const std::uint16_t* b1 = b0 + 16 * kd;
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < kd; k += 2) {
    const __m512bh k0 = load_bh(b0 + k * 16), k1 = load_bh(b1 + k * 16);
    for (int r = 0; r < R; ++r) {
      const __m512bh a = pair(q + r * kd + k);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, k0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, k1);
    }
  }
  const __m512 f = _mm512_set1_ps(scale);
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(s + r * lds, _mm512_mul_ps(acc[r][0], f));
    _mm512_storeu_ps(s + r * lds + 16, _mm512_mul_ps(acc[r][1], f));
  }
}

// R rows x 16 NC columns of O from n0, over ncols keys.
template <int R, int NC>
void pv_block(const std::uint16_t* p, std::int64_t ldp, std::int64_t ncols, const std::uint16_t* vb, std::int64_t dp,
              float* o, std::int64_t ldo) {
  __m512 acc[R][NC];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_loadu_ps(o + r * ldo + 16 * c);
  for (std::int64_t j = 0; j < ncols; j += 2) {
    const std::uint16_t* v = vb + j * dp;  // pair row j / 2: 2 dp bf16
    __m512bh b[NC];
    for (int c = 0; c < NC; ++c) b[c] = load_bh(v + 32 * c);
    for (int r = 0; r < R; ++r) {
      const __m512bh a = pair(p + r * ldp + j);
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], a, b[c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(o + r * ldo + 16 * c, acc[r][c]);
}

template <int R>
void pv_rows(const std::uint16_t* p, std::int64_t ldp, std::int64_t ncols, const std::uint16_t* vb, std::int64_t dp,
             float* o, std::int64_t ldo) {
  std::int64_t n0 = 0;
  for (; n0 + 64 <= dp; n0 += 64) pv_block<R, 4>(p, ldp, ncols, vb + n0 * 2, dp, o + n0, ldo);
  for (; n0 < dp; n0 += 16) pv_block<R, 1>(p, ldp, ncols, vb + n0 * 2, dp, o + n0, ldo);
}

}  // namespace

void dpbf16_qk(const std::uint16_t* q, std::int64_t rows, std::int64_t kd, const std::uint16_t* kb,
               std::int64_t ncols, float scale, float* s, std::int64_t lds) {
  for (std::int64_t i0 = 0; i0 < rows; i0 += 8)  // rows: a multiple of 16
    for (std::int64_t j0 = 0; j0 < ncols; j0 += 32)
      qk_block<8>(q + i0 * kd, kd, kb + j0 * kd, scale, s + i0 * lds + j0, lds);
}

void dpbf16_to_bf16(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld, std::uint16_t* pb) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < ncols; j += 32) {  // round to nearest even, as amx_to_bf16
      const float* r = s + i * ld + j;
      _mm512_storeu_si512(pb + i * ld + j, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(r + 16), _mm512_loadu_ps(r)));
    }
}

void dpbf16_pv(const std::uint16_t* p, std::int64_t ldp, std::int64_t rows, std::int64_t ncols,
               const std::uint16_t* vb, std::int64_t dp, float* o, std::int64_t ldo) {
  for (std::int64_t i0 = 0; i0 < rows; i0 += 4) pv_rows<4>(p + i0 * ldp, ldp, ncols, vb, dp, o + i0 * ldo, ldo);
}

}  // namespace flatattn::cpu
