// The Hopper bulk tensor copy engine (TMA) and the shared-memory barriers it completes on (sm_90), device side
// (the tensor maps are built on the host by src/cuda/tma_map.h):
//   mbarrier init / arrive / arrive.expect_tx / parity wait, and the 4-D tiled load
//           cp.async.bulk.tensor that signals its bytes on an mbarrier (PTX ISA 8.0, "Tensor copy" and
//           "mbarrier"). The wait has an optional watchdog (FLATATTN_SM90_WS_WATCHDOG_NS, on by default while
//           the kernel is new): a wait that has not completed after that many nanoseconds gives up (mbar_wait), so a
//           broken pipeline gives wrong results instead of hanging the GPU; -DFLATATTN_SM90_WS_DEBUG=1 prints
//           which barrier and parity timed out and traps.
#pragma once

#include <cuda.h>  // CUtensorMap and its enums (types only; the function comes from the runtime's entry point)
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "src/cuda/common/arch.cuh"

#ifndef FLATATTN_SM90_WS_DEBUG
#define FLATATTN_SM90_WS_DEBUG 0  // 1: the watchdog prints which barrier timed out (costs wgmma overlap)
#endif
#ifndef FLATATTN_SM90_WS_WATCHDOG_NS
#define FLATATTN_SM90_WS_WATCHDOG_NS 4000000000ull  // 4 s; 0 turns the watchdog off
#endif

namespace flatattn::cuda::sm90 {

// ---- device: mbarriers ----------------------------------------------------------------------------------

FLATATTN_DEVICE void mbar_init(std::uint32_t bar, std::uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

/// Makes the initialized barriers visible to the other threads and to the copy engine (before the CTA barrier
/// that publishes them).
FLATATTN_DEVICE void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/// One arrival; the barrier's phase completes when all `count` arrivals and the expected bytes are in.
FLATATTN_DEVICE void mbar_arrive(std::uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

/// One arrival that also announces `bytes` the copy engine will deliver on this barrier in this phase.
FLATATTN_DEVICE void mbar_arrive_expect_tx(std::uint32_t bar, std::uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

FLATATTN_DEVICE bool mbar_try_wait(std::uint32_t bar, std::uint32_t parity) {
  std::uint32_t ok;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(ok)
      : "r"(bar), "r"(parity)
      : "memory");
  return ok != 0;
}

FLATATTN_DEVICE std::uint64_t global_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

/// What the first wait that timed out (FLATATTN_SM90_WS_WATCHDOG_NS) records: fired != 0, its barrier tag
/// (pipeline.cuh: 100 * slot + {0 full_k, 1 full_v, 2 empty_k, 3 empty_v}, 999 Q), parity, block and thread.
/// While `fired` is set every wait of every warp-specialized launch of this instance file gives up at once, so a
/// broken pipeline costs one timeout, not one per barrier. The host reads and clears it after a launch when
/// FLATATTN_SM90_WS_CHECK=1 (src/cuda/launch_ws.cuh: the call then throws, naming the barrier); otherwise it is
/// never cleared and the process has wrong results. Plain stores, no printf or trap (see mbar_wait).
struct WsTimeout {
  unsigned fired, tag, parity, block, thread;
};
static __device__ WsTimeout g_ws_timeout = {0u, 0u, 0u, 0u, 0u};  // one per instance file (whole-program compilation)

/// Waits until the phase of parity `parity` has completed (a fresh barrier counts its phase "before 0",
/// parity 1, as completed: the producer's first pass over the empty barriers does not wait). `tag` names the
/// barrier in the debug message. With the watchdog, a wait that exceeds FLATATTN_SM90_WS_WATCHDOG_NS gives up
/// (the kernel then finishes with wrong results instead of hanging the GPU; debug builds print and trap). Not a
/// trap in release builds: a __trap or printf on this path makes ptxas drop the consumers' register
/// reallocation (spills, C7512).
FLATATTN_DEVICE void mbar_wait(std::uint32_t bar, std::uint32_t parity, int tag) {
  if (mbar_try_wait(bar, parity)) return;
#if FLATATTN_SM90_WS_WATCHDOG_NS > 0
  // Two clocks: %globaltimer (ns) and the SM's cycle counter (at most ~2 GHz: 2 cycles per ns is >= the
  // limit), so the watchdog fires even where one of them does not advance.
  const std::uint64_t t0 = global_ns();
  const long long c0 = clock64();
  while (!mbar_try_wait(bar, parity)) {
    if (*static_cast<volatile unsigned*>(&g_ws_timeout.fired) != 0) return;
    if (global_ns() - t0 > FLATATTN_SM90_WS_WATCHDOG_NS ||
        static_cast<std::uint64_t>(clock64() - c0) > 2ull * FLATATTN_SM90_WS_WATCHDOG_NS) {
      if (atomicCAS(&g_ws_timeout.fired, 0u, 1u) == 0u) {  // the first one names itself
        volatile WsTimeout* w = &g_ws_timeout;
        w->tag = static_cast<unsigned>(tag);
        w->parity = parity;
        w->block = blockIdx.x;
        w->thread = threadIdx.x;
      }
#if FLATATTN_SM90_WS_DEBUG
      printf("flatattn sm90 ws: mbarrier wait timed out: block %d thread %d barrier tag %d parity %u\n",
             static_cast<int>(blockIdx.x), static_cast<int>(threadIdx.x), tag, parity);
      __trap();
#endif
      return;
    }
  }
#endif
  (void)tag;
  while (!mbar_try_wait(bar, parity)) {
  }
}

// ---- device: TMA ----------------------------------------------------------------------------------------

/// Loads the box at coordinates (col, row, head, batch) of `map` into shared memory at `dst` (1024-byte aligned
/// for the 128-byte swizzle); its bytes complete on barrier `bar`.
FLATATTN_DEVICE void tma_load_4d(std::uint32_t dst, const CUtensorMap* map, std::uint32_t bar, int col, int row,
                                 int head, int batch) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(bar), "r"(col), "r"(row), "r"(head), "r"(batch)
      : "memory");
}

/// Pulls the tensor map into the copy engine's cache before the first load.
FLATATTN_DEVICE void tma_prefetch(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}

}  // namespace flatattn::cuda::sm90
