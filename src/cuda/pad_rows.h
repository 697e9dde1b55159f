// Copies between a caller's (B, N, H, D) view and a dense zero-padded (B, N, H, D8) workspace, for the
// views the kernels cannot address directly (src/cuda/staging.h): D not a multiple of 8, or rows not
// 16-byte aligned. 2-byte elements (f16, bf16) moved as raw bits. Defined in pad_rows.cu; asynchronous
// on `stream` (a cudaStream_t). Plain C++ header.
#pragma once

#include <cstdint>

#include "src/core/problem.h"

namespace flatattn::cuda {

/// The shape both sides share: B x N rows of H heads, D columns of the view, D8 (>= D, a multiple of 8)
/// of the dense side. Varlen: batch = 1, n = the packed rows, strides.b unused.
struct PadShape {
  std::int64_t batch = 0, n = 0, heads = 0, d = 0, d8 = 0;
  [[nodiscard]] std::int64_t elements() const { return batch * n * heads * d8; }
};

/// dst[(b N + n) H + h][c] = c < D ? src[b s.b + n s.n + h s.h + c] : 0 for c < D8. Throws flatattn::Error
/// when the launch fails.
void pad_rows(const void* src, const RowStrides& s, void* dst, const PadShape& shape, void* stream);

/// The reverse, columns c < D only: dst[b s.b + n s.n + h s.h + c] = src[(b N + n) H + h][c]. Rows
/// n >= *row_end (when row_end is not null: varlen's cu_seqlens[B], read on the device) are not written,
/// as the kernels write no row outside the sequences. Throws flatattn::Error when the launch fails.
void unpad_rows(const void* src, void* dst, const RowStrides& s, const PadShape& shape, const std::int32_t* row_end,
                void* stream);

}  // namespace flatattn::cuda
