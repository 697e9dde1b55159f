// The checks the CUDA kernels add to src/core/validate (which every backend shares): head dims up to 256,
// int sequence lengths, element-aligned data; and which views the kernels address directly (D a
// multiple of 8 and 16-byte aligned rows: they move rows in 16-byte chunks). A view they cannot address
// is not refused: dispatch stages it through a zero-padded workspace (src/cuda/staging.h). The checks
// run on every call, so they build no string unless one fails (FLATATTN_REQUIRE).
#pragma once

#include <cstdint>

#include "src/core/problem.h"

namespace flatattn::cuda {

/// Whether the kernels address the (rows, heads, D) view at `data` with element strides `s` directly:
/// p.d % 8 == 0, the data 16-byte aligned, and every stride that moves between rows a multiple of 8
/// elements (a dimension of extent 1 may have any stride).
bool kernel_addressable(const Problem& p, const void* data, const RowStrides& s, std::int64_t rows,
                        std::int64_t heads);

/// Throws Error(invalid_argument, ...) naming the first tensor or dimension the CUDA backend cannot take.
/// Returns true when the kernels address every view directly (kernel_addressable), false when dispatch
/// must stage some of them.
bool check_cuda_args(const Problem& p, const FwdTensors& t);
bool check_cuda_args(const Problem& p, const BwdTensors& t);

}  // namespace flatattn::cuda
