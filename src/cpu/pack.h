// Conversion between the user's tensors (f32/f16/bf16, any row stride) and the engine's fp32 tiles in
// the layouts src/cpu/gemm.h reads. Every packer zero-fills its padding (rows, keys, head-dim lanes), so
// padded lanes of a product are exact zeros and never NaN.
#pragma once

#include <cstdint>

#include "flatattn/dtype.h"
#include "src/core/problem.h"

namespace flatattn::cpu {

/// The rows of one head of one sequence of a (row, head)-addressed tensor: row n starts at element
/// base + n * row_stride and holds `d` contiguous elements.
struct Rows {
  const void* data = nullptr;
  DType dtype = DType::f32;
  std::int64_t base = 0, row_stride = 0;

  [[nodiscard]] std::int64_t offset(std::int64_t n) const { return base + n * row_stride; }
};

/// Rows of head h of sequence b of a tensor with strides s (varlen: rows counted from the sequence start).
inline Rows rows_of(const Problem& p, const void* data, const RowStrides& s, std::int64_t b, std::int64_t seq_row0,
                    std::int64_t h) {
  return {data, p.dtype, row_offset(p, s, b, seq_row0, 0, h), s.n};
}

/// dst[0..dp) = mul * row n (converted to fp32), zeros in [d, dp).
void load_row(const Rows& src, std::int64_t n, std::int64_t d, std::int64_t dp, float mul, float* dst);

/// Row-major tile [rows_pad][dp] of rows n0 .. n0+count (count <= rows_pad), times mul; padding zeroed.
void pack_rows(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
               std::int64_t dp, float mul, float* dst);

/// The same tile in kernel A's row-group interleaved layout (gemm.h; rows_pad a multiple of kMrA).
void pack_rows_interleaved(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad,
                           std::int64_t d, std::int64_t dp, float mul, float* dst);

/// Rows n0 .. n0+count as transposed panels [count_pad/kPanel][dp][kPanel] (gemm.h); keys count .. count_pad
/// (count_pad a multiple of kPanel) and lanes d .. dp are zeroed.
void pack_panels(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t count_pad, std::int64_t d,
                 std::int64_t dp, float* dst);

/// Stores d floats of src times mul into row n of dst (rounded to the storage dtype, nearest even).
void store_row(void* data, DType dtype, std::int64_t offset, const float* src, std::int64_t d, float mul);

/// Rows n0 .. n0+count of a fp32 row-major tile (leading dim ld) into a tensor, times mul.
void store_rows(void* data, DType dtype, std::int64_t base, std::int64_t row_stride, std::int64_t n0,
                std::int64_t count, const float* src, std::int64_t ld, std::int64_t d, float mul);

}  // namespace flatattn::cpu
