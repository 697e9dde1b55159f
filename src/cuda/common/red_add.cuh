// fp32 reductions into global memory (the backward's dQ accumulator). A reduction returns nothing,
// so unlike atomicAdd (ATOMG, whose answer crosses the crossbar back to the SM) it issues as RED.
// sm_90 has 8-byte vector reductions (PTX 8.1 red.global.add.v2.f32): one instruction per pair of
// adjacent columns, as many as FA2 issues for half the elements; older arches issue two scalar ones.
#pragma once

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

/// a[0] += x, a[1] += y (relaxed, gpu scope); a is 8-byte aligned.
FLATATTN_DEVICE void red_add2(float* a, float x, float y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(a), "f"(x), "f"(y) : "memory");
#else
  atomicAdd(a, x);
  atomicAdd(a + 1, y);
#endif
}

}  // namespace flatattn::cuda
