// Warp specialization on sm_90a: the register reallocation between warpgroup roles (setmaxnreg; PTX ISA 8.0,
// it takes effect when the kernel starts under a register cap, __launch_bounds__(threads, 1), and each role is
// one branch of one if/else) and the named barriers that order warpgroups without stopping the whole CTA.
#pragma once

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda::sm90 {

/// This warpgroup gives registers back: at most N per thread from here on (all 128 threads execute it).
template <int N>
FLATATTN_DEVICE void regs_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

/// This warpgroup takes registers: up to N per thread from here on (waits until the pool has them).
template <int N>
FLATATTN_DEVICE void regs_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

/// Barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32).
FLATATTN_DEVICE void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/// Barrier kId (1..15) over `threads` threads, the id an immediate: ptxas then counts only the barriers used (a
/// register id reserves all 16).
template <int kId>
FLATATTN_DEVICE void named_sync(int threads) {
  static_assert(kId >= 1 && kId <= 15, "named barriers 1..15");
  asm volatile("bar.sync %0, %1;\n" ::"n"(kId), "r"(threads) : "memory");
}

/// Arrives at barrier `id` without waiting (the other side calls named_sync).
FLATATTN_DEVICE void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace flatattn::cuda::sm90
