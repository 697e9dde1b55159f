// Ordered accumulation across CTAs for the deterministic backward: the CTAs that add into one dQ
// block do so one after another in a fixed order, so the fp32 sums are the same on every run. A
// counter per block counts the CTAs that are done; a CTA waits until the count equals its place in
// the order (acquire), adds, then increments the count (release) -- the semaphore of FlashAttention-3's
// deterministic backward. Tiles are claimed from a counter (`claim_tile`), so every CTA that another
// waits for has already started: a CTA only waits for tiles claimed before its own, which cannot
// deadlock however many CTAs are resident.
#pragma once

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

/// Tile index for this CTA, in the order CTAs start (all threads get it; one barrier).
FLATATTN_DEVICE int claim_tile(unsigned* ticket) {
  __shared__ int tile;
  if (threadIdx.x == 0) tile = static_cast<int>(atomicAdd(ticket, 1u));
  __syncthreads();
  return tile;
}

/// The count as thread 0 reads it now (relaxed; other threads get 0). Issued early, its answer is
/// only waited for where wait_turn uses it.
FLATATTN_DEVICE int peek_turn(const int* count) {
  int seen = 0;
  if (threadIdx.x == 0) asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];\n" : "=r"(seen) : "l"(count) : "memory");
  return seen;
}

/// Blocks the CTA until *count == place: thread 0 starts from `seen` (peek_turn's answer), polls while
/// it is short, then makes its last read an acquire with a fence (a strong read followed by
/// fence.acq_rel is an acquire pattern in the PTX memory model); one barrier. An acquire load issued
/// here instead, whose round trip the whole CTA waited for, cost ~10% of the step at N = 8k, D = 128
/// (H100: Barrier stall 1.38 vs 0.38 cycles per instruction in the default mode).
FLATATTN_DEVICE void wait_turn(const int* count, int place, int seen) {
  if (threadIdx.x == 0) {
    while (seen != place) {
      __nanosleep(64);
      asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];\n" : "=r"(seen) : "l"(count) : "memory");
    }
    asm volatile("fence.acq_rel.gpu;\n" ::: "memory");
  }
  __syncthreads();
}

/// Publishes this CTA's additions and passes the turn on: the barrier orders every thread's additions
/// before thread 0's gpu-scope release (the PTX memory model's causality order is transitive through
/// bar.sync; CUTLASS's generic barrier releases the same way), so only thread 0 waits for the fence.
/// (A fence in every thread instead cost 0.66 of 8.9 cycles per instruction at N = 8k, D = 128.)
FLATATTN_DEVICE void pass_turn(int* count) {
  __syncthreads();
  if (threadIdx.x == 0) asm volatile("red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(count) : "memory");
}

}  // namespace flatattn::cuda
