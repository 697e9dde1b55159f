// The additive bias's gradient around the backward kernels (src/cuda/common/dbias.cuh writes dS from the
// kernels): zeroing a strided dbias, and the pass that turns an fp32 workspace into dbias (a dtype
// conversion, and in deterministic mode the fixed-order sum over the bias's broadcast dims). Defined in
// dbias.cu (family-independent, compiled with pad_rows.cu); asynchronous on `stream` (a cudaStream_t).
// Plain C++ header.
#pragma once

#include <cstdint>

#include "src/core/problem.h"

namespace flatattn::cuda {

/// Writes 0 to every element of g (nb, nh, nq, nk; strides sb, sh, si; g.dtype). Throws Error when the launch fails.
void dbias_zero(const BiasGrad& g, void* stream);

/// g[ob, oh, oi, j] = sum of ws[b, h, i, j] over the (b, h, i) that broadcast onto (ob, oh, oi), in increasing
/// b, then h, then i (a fixed order: bitwise reproducible), rounded once to g.dtype. ws: fp32 (wb, wh, wq, nk)
/// contiguous, each of wb, wh, wq either g's extent or, where g's is 1, any extent (summed). Throws Error when the
/// launch fails.
void dbias_finish(const float* ws, std::int64_t wb, std::int64_t wh, std::int64_t wq, const BiasGrad& g, void* stream);

}  // namespace flatattn::cuda
