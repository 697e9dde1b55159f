// AMX-BF16 tile kernels of the bf16 forward and backward (layouts in amx.h), and bf16_transpose, which
// both bf16 paths use (AVX-512 only, no tile state). This file alone is compiled with
// -mamx-tile -mamx-bf16 -mavx512f -mavx512bf16 and includes no engine header with inline code, so no
// AMX/AVX-512 instruction reaches a function that runs before forward_matmul() chose this path.
//
// All 8 tiles are configured as 16 rows x 64 bytes (16 fp32 or 32 bf16 per row). amx_qk computes
// 32 x 32 logit blocks (4 accumulators, 2 Q tiles, 2 K tiles) where 32 rows remain, else 16 x 32;
// amx_pv keeps 32 x 32 of O in 4 accumulators (two P tiles, two V tiles per 32-key step) and streams P (A)
// and V (B) tiles over the keys; 16-row remainders keep 16 x 64 of O and stream one P tile and four V tiles.
#include <immintrin.h>

#include <cstdint>

namespace flatattn::cpu {

namespace {

struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

void scale_rows(float* s, std::int64_t rows, std::int64_t ncols, std::int64_t lds, float scale) {
  if (scale == 1.f) return;  // dP = dO V^T of the backward
  const __m512 f = _mm512_set1_ps(scale);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < ncols; j += 16)
      _mm512_storeu_ps(s + i * lds + j, _mm512_mul_ps(_mm512_loadu_ps(s + i * lds + j), f));
}

template <int NC>  // accumulator tiles 0 .. NC-1 hold O columns n0 .. n0 + 16 NC
void pv_block(const std::uint16_t* p, std::int64_t ldp, std::int64_t ncols, const std::uint16_t* vb, std::int64_t dp,
              float* o, std::int64_t ldo) {
  const std::int64_t so = ldo * 4, sv = dp * 4, sp = ldp * 2;
  _tile_loadd(0, o, so);
  if constexpr (NC > 1) _tile_loadd(1, o + 16, so);
  if constexpr (NC > 2) _tile_loadd(2, o + 32, so);
  if constexpr (NC > 3) _tile_loadd(3, o + 48, so);
  for (std::int64_t k0 = 0; k0 < ncols; k0 += 32) {
    const std::uint16_t* v = vb + k0 * dp;  // pair row k0 / 2
    _tile_loadd(4, p + k0, sp);
    _tile_loadd(5, v, sv);
    _tile_dpbf16ps(0, 4, 5);
    if constexpr (NC > 1) {
      _tile_loadd(6, v + 32, sv);
      _tile_dpbf16ps(1, 4, 6);
    }
    if constexpr (NC > 2) {
      _tile_loadd(7, v + 64, sv);
      _tile_dpbf16ps(2, 4, 7);
    }
    if constexpr (NC > 3) {
      _tile_loadd(5, v + 96, sv);
      _tile_dpbf16ps(3, 4, 5);
    }
  }
  _tile_stored(0, o, so);
  if constexpr (NC > 1) _tile_stored(1, o + 16, so);
  if constexpr (NC > 2) _tile_stored(2, o + 32, so);
  if constexpr (NC > 3) _tile_stored(3, o + 48, so);
}

// O[0..32)[0..32) += P V for two 16-row P tiles and two 16-column V tiles (accumulators 0 .. 3, P in 4, 5,
// V in 6, 7): each loaded tile feeds two products and no tile is reloaded while a product of the same step
// still reads it (pv_block<4> reloads tile 5 within a step: 5 loads per 4 products against 4 here).
void pv_block_2x2(const std::uint16_t* p, std::int64_t ldp, std::int64_t ncols, const std::uint16_t* vb,
                  std::int64_t dp, float* o, std::int64_t ldo) {
  const std::int64_t so = ldo * 4, sv = dp * 4, sp = ldp * 2;
  float* o1 = o + 16 * ldo;
  _tile_loadd(0, o, so);
  _tile_loadd(1, o + 16, so);
  _tile_loadd(2, o1, so);
  _tile_loadd(3, o1 + 16, so);
  for (std::int64_t k0 = 0; k0 < ncols; k0 += 32) {
    const std::uint16_t* v = vb + k0 * dp;  // pair row k0 / 2
    _tile_loadd(4, p + k0, sp);
    _tile_loadd(5, p + 16 * ldp + k0, sp);
    _tile_loadd(6, v, sv);
    _tile_loadd(7, v + 32, sv);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, o, so);
  _tile_stored(1, o + 16, so);
  _tile_stored(2, o1, so);
  _tile_stored(3, o1 + 16, so);
}

// r[c] = column c of the 16 x 16 block whose row r was r[r] (in place). Unpack pairs of rows, shuffle
// quadruples within the 128-bit lanes, then a 4 x 4 transpose of the lanes of r[c], r[4+c], r[8+c], r[12+c].
void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);      // per lane: a0 b0 a1 b1
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);  // per lane: a2 b2 a3 b3
  }
  for (int k = 0; k < 4; ++k) {  // r[4k + c], lane L: column 4L + c of rows 4k .. 4k+3
    r[4 * k] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
    r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
    r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
    r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
  }
  __m512 out[16];
  for (int c = 0; c < 4; ++c) {
    const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);       // A0 A1 B0 B1
    const __m512 u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);       // A2 A3 B2 B3
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);  // C0 C1 D0 D1
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);  // C2 C3 D2 D3
    out[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);       // A0 B0 C0 D0: column c
    out[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);   // column 4 + c
    out[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);   // column 8 + c
    out[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);  // column 12 + c
  }
  for (int c = 0; c < 16; ++c) r[c] = out[c];
}

// A constant in memory: GCC 12 drops stores to a local config before LDTILECFG (it does not see the
// instruction read them), which leaves an invalid configuration (#GP).
constexpr TileConfig make_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
  return c;
}
constinit const TileConfig kConfig = make_config();

}  // namespace

void amx_begin() { _tile_loadconfig(&kConfig); }

void amx_end() { _tile_release(); }

void amx_qk(const std::uint16_t* q, std::int64_t rows, std::int64_t kd, const std::uint16_t* kb, std::int64_t ncols,
            float scale, float* s, std::int64_t lds) {
  const std::int64_t sq = kd * 2, ss = lds * 4;
  std::int64_t i0 = 0;
  for (; i0 + 32 <= rows; i0 += 32) {
    const std::uint16_t* q0 = q + i0 * kd;
    const std::uint16_t* q1 = q0 + 16 * kd;
    for (std::int64_t j0 = 0; j0 < ncols; j0 += 32) {
      const std::uint16_t* b0 = kb + j0 * kd;
      const std::uint16_t* b1 = b0 + 16 * kd;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (std::int64_t k = 0; k < kd; k += 32) {
        _tile_loadd(4, q0 + k, sq);
        _tile_loadd(5, q1 + k, sq);
        _tile_loadd(6, b0 + k * 16, 64);
        _tile_loadd(7, b1 + k * 16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      float* c = s + i0 * lds + j0;
      _tile_stored(0, c, ss);
      _tile_stored(1, c + 16, ss);
      _tile_stored(2, c + 16 * lds, ss);
      _tile_stored(3, c + 16 * lds + 16, ss);
    }
    scale_rows(s + i0 * lds, 32, ncols, lds, scale);
  }
  for (; i0 < rows; i0 += 16) {
    const std::uint16_t* q0 = q + i0 * kd;
    for (std::int64_t j0 = 0; j0 < ncols; j0 += 32) {
      const std::uint16_t* b0 = kb + j0 * kd;
      const std::uint16_t* b1 = b0 + 16 * kd;
      _tile_zero(0);
      _tile_zero(1);
      for (std::int64_t k = 0; k < kd; k += 32) {
        _tile_loadd(4, q0 + k, sq);
        _tile_loadd(6, b0 + k * 16, 64);
        _tile_loadd(7, b1 + k * 16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
      }
      float* c = s + i0 * lds + j0;
      _tile_stored(0, c, ss);
      _tile_stored(1, c + 16, ss);
    }
    scale_rows(s + i0 * lds, 16, ncols, lds, scale);
  }
}

void amx_to_bf16(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld, std::uint16_t* pb) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < ncols; j += 32) {
      const float* r = s + i * ld + j;
      const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(r + 16), _mm512_loadu_ps(r));
      _mm512_storeu_si512(pb + i * ld + j, (__m512i)v);
    }
}

/// x minus its bf16 rounding h (exact), 0 where h is not finite: the rest that the next piece rounds (amx.h).
inline __m512 piece_rest(__m512 x, __m256i h) {
  const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  const __mmask16 finite = _mm512_cmp_ps_mask(_mm512_sub_ps(hf, hf), _mm512_setzero_ps(), _CMP_EQ_OQ);
  return _mm512_maskz_sub_ps(finite, x, hf);
}

void bf16_transpose(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t lds, std::uint16_t* t,
                    std::int64_t ldt, int pieces, std::int64_t plane) {
  for (std::int64_t i0 = 0; i0 < rows; i0 += 32)
    for (std::int64_t j0 = 0; j0 < ncols; j0 += 16) {
      __m512 a[16], b[16];  // rows i0 .. i0+15 and i0+16 .. i0+31, keys j0 .. j0+15
      for (int r = 0; r < 16; ++r) {
        a[r] = _mm512_loadu_ps(s + (i0 + r) * lds + j0);
        b[r] = _mm512_loadu_ps(s + (i0 + 16 + r) * lds + j0);
      }
      transpose16(a);
      transpose16(b);
      for (int c = 0; c < 16; ++c) {
        __m512 x = a[c], y = b[c];
        for (int k = 0; k < pieces; ++k) {
          const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(y, x);  // x in the low 16 words, y in the high
          _mm512_storeu_si512(t + k * plane + (j0 + c) * ldt + i0, h);
          if (k + 1 == pieces) break;
          x = piece_rest(x, _mm512_castsi512_si256(h));
          y = piece_rest(y, _mm512_extracti64x4_epi64(h, 1));
        }
      }
    }
}

void amx_pv(const std::uint16_t* p, std::int64_t ldp, std::int64_t rows, std::int64_t ncols, const std::uint16_t* vb,
            std::int64_t dp, float* o, std::int64_t ldo) {
  std::int64_t r = 0;
  for (; r + 32 <= rows; r += 32) {  // 32 x 32 blocks of O, then the rest of dp by the 16-row blocks below
      std::int64_t n0 = 0;
      for (; n0 + 32 <= dp; n0 += 32) pv_block_2x2(p + r * ldp, ldp, ncols, vb + n0 * 2, dp, o + r * ldo + n0, ldo);
      for (std::int64_t i0 = r; i0 < r + 32; i0 += 16)
        for (std::int64_t n = n0; n < dp; n += 16) pv_block<1>(p + i0 * ldp, ldp, ncols, vb + n * 2, dp, o + i0 * ldo + n, ldo);
    }
  for (std::int64_t i0 = r; i0 < rows; i0 += 16) {
    const std::uint16_t* pi = p + i0 * ldp;
    float* oi = o + i0 * ldo;
    std::int64_t n0 = 0;
    for (; n0 + 64 <= dp; n0 += 64) pv_block<4>(pi, ldp, ncols, vb + n0 * 2, dp, oi + n0, ldo);
    for (; n0 + 32 <= dp; n0 += 32) pv_block<2>(pi, ldp, ncols, vb + n0 * 2, dp, oi + n0, ldo);
    for (; n0 < dp; n0 += 16) pv_block<1>(pi, ldp, ncols, vb + n0 * 2, dp, oi + n0, ldo);
  }
}

}  // namespace flatattn::cpu
