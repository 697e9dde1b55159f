#include "src/cpu/pack.h"

#include <cstring>

#include "src/core/half.h"
#include "src/cpu/gemm.h"

namespace flatattn::cpu {

namespace {

/// dst[i * stride] = mul * row n, element i (i < d), zeros for d <= i < dp.
template <typename Convert>
void convert_row(const std::uint16_t* s, std::int64_t d, std::int64_t dp, float mul, float* dst, std::int64_t stride,
                 Convert cvt) {
  for (std::int64_t i = 0; i < d; ++i) dst[i * stride] = cvt(s[i]) * mul;
  for (std::int64_t i = d; i < dp; ++i) dst[i * stride] = 0.f;
}

void load_row_strided(const Rows& src, std::int64_t n, std::int64_t d, std::int64_t dp, float mul, float* dst,
                      std::int64_t stride) {
  const std::int64_t off = src.offset(n);
  switch (src.dtype) {
    case DType::f32: {
      const float* s = static_cast<const float*>(src.data) + off;
      for (std::int64_t i = 0; i < d; ++i) dst[i * stride] = s[i] * mul;
      for (std::int64_t i = d; i < dp; ++i) dst[i * stride] = 0.f;
      break;
    }
    case DType::bf16:  // lambdas, not function pointers: each a type of its own, so the conversion inlines
      convert_row(static_cast<const std::uint16_t*>(src.data) + off, d, dp, mul, dst, stride,
                  [](std::uint16_t h) { return bf16_to_float(h); });
      break;
    case DType::f16:
      convert_row(static_cast<const std::uint16_t*>(src.data) + off, d, dp, mul, dst, stride,
                  [](std::uint16_t h) { return f16_to_float(h); });
      break;
    default:  // validation admits only f32/f16/bf16 for kernels
      for (std::int64_t i = 0; i < d; ++i) dst[i * stride] = load_float(src.data, src.dtype, off + i) * mul;
      for (std::int64_t i = d; i < dp; ++i) dst[i * stride] = 0.f;
  }
}

void zero_strided(float* dst, std::int64_t n, std::int64_t stride) {
  for (std::int64_t i = 0; i < n; ++i) dst[i * stride] = 0.f;
}

/// The f32 fast path of the interleaving packers: kG whole rows (row g at rows[g], d floats each, times mul)
/// into a group [dp][kG] (element (g, i) at dst[i * kG + g]), lanes d .. dp zeroed. Reads each row once along
/// its length and writes the group in order, so it runs at copy speed; the values equal the generic path's.
template <int kG>
void interleave_group_f32(const float* const* rows, std::int64_t d, std::int64_t dp, float mul, float* dst) {
  std::int64_t i = 0;
  for (; i + 4 <= d; i += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u)
#pragma GCC unroll 32
      for (int g = 0; g < kG; ++g) dst[(i + u) * kG + g] = rows[g][i + u] * mul;
  }
  for (; i < d; ++i)
#pragma GCC unroll 32
    for (int g = 0; g < kG; ++g) dst[i * kG + g] = rows[g][i] * mul;
  if (dp > d) std::memset(dst + d * kG, 0, sizeof(float) * static_cast<std::size_t>((dp - d) * kG));
}

}  // namespace

void load_row(const Rows& src, std::int64_t n, std::int64_t d, std::int64_t dp, float mul, float* dst) {
  if (src.dtype == DType::f32) {  // contiguous: a vectorised copy
    const float* s = static_cast<const float*>(src.data) + src.offset(n);
    for (std::int64_t i = 0; i < d; ++i) dst[i] = s[i] * mul;
    for (std::int64_t i = d; i < dp; ++i) dst[i] = 0.f;
    return;
  }
  if (src.dtype == DType::bf16) {  // contiguous: widening is a shift (bf16_to_float), so this vectorises too
    const std::uint16_t* s = static_cast<const std::uint16_t*>(src.data) + src.offset(n);
    for (std::int64_t i = 0; i < d; ++i) dst[i] = bf16_to_float(s[i]) * mul;
    for (std::int64_t i = d; i < dp; ++i) dst[i] = 0.f;
    return;
  }
  load_row_strided(src, n, d, dp, mul, dst, 1);
}

/// The f32 fast path of the interleaving packers: the whole groups of kG real rows n0 .. n0 + count - 1, each
/// group's rows interleaved by interleave_group_f32 at dst + i * dp. Returns the rows done (0 for other dtypes);
/// the caller packs the rest row by row.
template <int kG>
std::int64_t interleave_whole_groups_f32(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t d,
                                         std::int64_t dp, float mul, float* dst) {
  std::int64_t i0 = 0;
  if (src.dtype != DType::f32) return 0;
  const float* base = static_cast<const float*>(src.data);
  for (; i0 + kG <= count; i0 += kG) {
    const float* rows[kG];
    for (int g = 0; g < kG; ++g) rows[g] = base + src.offset(n0 + i0 + g);
    interleave_group_f32<kG>(rows, d, dp, mul, dst + i0 * dp);
  }
  return i0;
}

void pack_rows(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
               std::int64_t dp, float mul, float* dst) {
  for (std::int64_t i = 0; i < count; ++i) load_row(src, n0 + i, d, dp, mul, dst + i * dp);
  if (rows_pad > count) std::memset(dst + count * dp, 0, sizeof(float) * (rows_pad - count) * dp);
}

void pack_rows_interleaved(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad,
                           std::int64_t d, std::int64_t dp, float mul, float* dst) {
  const std::int64_t i0 = interleave_whole_groups_f32<kMrA>(src, n0, count, d, dp, mul, dst);
  for (std::int64_t i = i0; i < rows_pad; ++i) {
    float* g = dst + (i / kMrA) * kMrA * dp + i % kMrA;
    if (i < count) {
      load_row_strided(src, n0 + i, d, dp, mul, g, kMrA);
    } else {
      zero_strided(g, dp, kMrA);
    }
  }
}

void pack_panels(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t count_pad, std::int64_t d,
                 std::int64_t dp, float* dst) {
  const std::int64_t j0 = interleave_whole_groups_f32<kPanel>(src, n0, count, d, dp, 1.f, dst);
  for (std::int64_t j = j0; j < count_pad; ++j) {
    float* panel = dst + (j / kPanel) * dp * kPanel + j % kPanel;
    if (j < count) {
      load_row_strided(src, n0 + j, d, dp, 1.f, panel, kPanel);
    } else {
      zero_strided(panel, dp, kPanel);
    }
  }
}

void store_row(void* data, DType dtype, std::int64_t offset, const float* src, std::int64_t d, float mul) {
  switch (dtype) {
    case DType::f32: {
      float* o = static_cast<float*>(data) + offset;
      for (std::int64_t i = 0; i < d; ++i) o[i] = src[i] * mul;
      break;
    }
    case DType::bf16: {
      std::uint16_t* o = static_cast<std::uint16_t*>(data) + offset;
      for (std::int64_t i = 0; i < d; ++i) o[i] = float_to_bf16(src[i] * mul);
      break;
    }
    case DType::f16: {
      std::uint16_t* o = static_cast<std::uint16_t*>(data) + offset;
      for (std::int64_t i = 0; i < d; ++i) o[i] = float_to_f16(src[i] * mul);
      break;
    }
    default:
      for (std::int64_t i = 0; i < d; ++i) store_double(data, dtype, offset + i, static_cast<double>(src[i] * mul));
  }
}

void store_rows(void* data, DType dtype, std::int64_t base, std::int64_t row_stride, std::int64_t n0,
                std::int64_t count, const float* src, std::int64_t ld, std::int64_t d, float mul) {
  for (std::int64_t i = 0; i < count; ++i) store_row(data, dtype, base + (n0 + i) * row_stride, src + i * ld, d, mul);
}

}  // namespace flatattn::cpu
