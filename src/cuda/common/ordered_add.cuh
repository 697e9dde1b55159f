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

/// Blocks the CTA until *count == place (thread 0 polls with acquire loads; one barrier). Reading the
/// count early instead (a relaxed read at the step's start, a fence.acq_rel here) gave 5-11% less
/// throughput on dense shapes and up to 11% more on causal ones, 5% and 2% less at N = 8k, D = 128 (H100,
/// bench/results/gpu-bwd-h100.md); our reading, not profiled: the early read is stale whenever the CTAs
/// run in step, and the fence also waits for thread 0's in-flight copies.
FLATATTN_DEVICE void wait_turn(const int* count, int place) {
  if (threadIdx.x == 0) {
    int seen;
    while (true) {
      asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(seen) : "l"(count) : "memory");
      if (seen == place) break;
      __nanosleep(64);
    }
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
