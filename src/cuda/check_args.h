// The checks the CUDA kernels add to src/core/validate (which every backend shares): head dims the
// kernels move in 16-byte chunks up to 256, int sequence lengths, and 16-byte aligned rows of every
// tensor. They run on every call, so they build no string unless one fails (FLATATTN_REQUIRE).
#pragma once

#include "src/core/problem.h"

namespace flatattn::cuda {

/// Throws Error(invalid_argument, ...) naming the first tensor or dimension the kernels cannot take.
void check_cuda_args(const Problem& p, const FwdTensors& t);
void check_cuda_args(const Problem& p, const BwdTensors& t);

}  // namespace flatattn::cuda
