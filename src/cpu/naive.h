// Naive materialized attention on the CPU in fp32: the yardstick the fused engine is compared with
// (`flatattn bench`). Not used by forward().
#pragma once

#include "src/core/problem.h"

namespace flatattn::cpu {

/// Attention as a framework computes it without fusion, per (batch, query head) slice: S = scale Q K^T is
/// materialized as a full Nq x Nk fp32 matrix (Eigen GEMM), soft-capped and masked in place, turned into
/// P by a row softmax (max, exp, sum, divide), then O = P V (Eigen GEMM). Inputs are converted to fp32
/// first; O is stored in the problem's dtype and LSE (when t.lse is set) in fp32. Same semantics as
/// forward() (fully masked rows give O = 0 and LSE = -inf). Multithreaded over the (batch, head) slices
/// with Problem::num_threads threads (0 = all); each thread holds one slice's S, so scratch is
/// threads x Nq x Nk x 4 bytes (plus the slice's Q, K, V, O): it grows as N^2 on purpose.
/// p and t must come from validate_forward() on CPU tensors.
void naive_forward(const Problem& p, const FwdTensors& t);

/// Bytes of scratch naive_forward allocates for p, all threads together.
std::size_t naive_workspace_bytes(const Problem& p);

}  // namespace flatattn::cpu
