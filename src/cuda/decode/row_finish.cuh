// The end of one query row in the decode kernels: its natural-log LSE from the max (log2 units) and sum,
// and the attention sink's term (the per-row form of common/softmax.cuh add_sinks: same math, for rows whose
// query heads differ, as in a packed GQA tile).
#pragma once

#include <cmath>

#include "src/cuda/common/softmax.cuh"

namespace flatattn::cuda {

/// inv (the output's factor 1 / sum, 0 for an empty row) and lse (natural log, -inf for an empty row) of a
/// row with max m2 (log2 units, -inf: empty) and sum l; then the sink's term when `sinks` is given.
FLATATTN_DEVICE void finish_row(float m2, float l, const float* sinks, int h, float& inv, float& lse) {
  constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
  const bool empty = !(l > 0.f) || m2 == -INFINITY;
  inv = empty ? 0.f : 1.f / l;
  lse = empty ? -INFINITY : (m2 + log2f(l)) * kLn2;
  if (sinks == nullptr) return;
  const float sk = sinks[h] * kLog2e, a = lse * kLog2e, mx = fmaxf(a, sk);
  if (mx == -INFINITY) return;
  const float l2 = mx + lg2(1.f + ex2(-fabsf(a - sk)));
  inv *= ex2(a - l2);
  lse = l2 * kLn2;
}

}  // namespace flatattn::cuda
