// The K/V ring of the warp-specialized forward: Stages shared-memory slots, each a K tile and a V tile, and
// four mbarriers per slot (tma.cuh):
//   full_k / full_v  (1 arrival + the tile's bytes): the producer's arrive.expect_tx, completed by the copy
//                    engine when the tile has landed; consumers wait on them.
//   empty_k / empty_v (kConsumers arrivals): every consumer thread arrives once it no longer reads the tile
//                    (after the wgmma.wait_group that retires its last product on it); the producer waits on
//                    them before refilling the slot.
// K and V are released separately: S = Q K^T finishes with K(j) a whole softmax before P V finishes with V(j),
// so the next K load starts earlier. Iteration `it` (0, 1, ... over the CTA's key blocks) uses slot it % Stages
// in phase (it / Stages) & 1; consumers wait full in that parity, the producer waits empty in the other
// (a fresh barrier reports the phase before 0 as completed, so the first pass does not wait).
// kQEmpty (the persistent kernel, ws_fwd_persistent.cuh): one more barrier, q_empty (kConsumers arrivals), on which
// the consumers release the Q tile after their epilogue (which stores O through it) and the producer waits before
// loading the next tile's Q; the n-th Q load (n = 0, 1, ... over the CTA's tiles) waits q_empty in parity
// (n & 1) ^ 1 and the consumers wait q_bar in parity n & 1, as the slots' iterations.
// Debug: -DFLATATTN_SM90_WS_WATCHDOG_NS=<ns> bounds every wait (tma.cuh); the tag in its message is
// 100 * slot + {0: full_k, 1: full_v, 2: empty_k, 3: empty_v}, 999 for Q, 998 for q_empty.
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/sm90/tma.cuh"

namespace flatattn::cuda::sm90 {

template <int kStages, int kTileBytes, int kConsumers, bool kQEmpty = false>
struct KvRing {
  static constexpr int kBarrierBytes = (4 * kStages + 1 + (kQEmpty ? 1 : 0)) * 8;  ///< + the Q barrier (+ q_empty)
  std::uint32_t tiles;  ///< shared address of slot 0's K tile (1024-byte aligned); V follows K in each slot
  std::uint32_t bars;   ///< shared address of the barriers (8-byte aligned)

  FLATATTN_DEVICE static int slot(int it) { return it % kStages; }
  FLATATTN_DEVICE static std::uint32_t phase(int it) { return static_cast<std::uint32_t>(it / kStages) & 1u; }
  FLATATTN_DEVICE std::uint32_t k(int s) const { return tiles + static_cast<std::uint32_t>(s * 2 * kTileBytes); }
  FLATATTN_DEVICE std::uint32_t v(int s) const { return k(s) + kTileBytes; }
  FLATATTN_DEVICE std::uint32_t bar(int s, int which) const { return bars + static_cast<std::uint32_t>((4 * s + which) * 8); }
  FLATATTN_DEVICE std::uint32_t q_bar() const { return bars + static_cast<std::uint32_t>(4 * kStages * 8); }
  FLATATTN_DEVICE std::uint32_t q_empty() const {
    static_assert(kQEmpty, "q_empty exists in the persistent kernel's ring only");
    return q_bar() + 8u;
  }

  /// One thread, before the CTA barrier that publishes them.
  FLATATTN_DEVICE void init() const {
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbar_init(bar(s, 0), 1);
      mbar_init(bar(s, 1), 1);
      mbar_init(bar(s, 2), kConsumers);
      mbar_init(bar(s, 3), kConsumers);
    }
    mbar_init(q_bar(), 1);
    if constexpr (kQEmpty) mbar_init(q_empty(), kConsumers);
    mbar_init_fence();
  }

  // consumers
  FLATATTN_DEVICE void wait_k(int it) const { mbar_wait(bar(slot(it), 0), phase(it), 100 * slot(it)); }
  FLATATTN_DEVICE void wait_v(int it) const { mbar_wait(bar(slot(it), 1), phase(it), 100 * slot(it) + 1); }
  FLATATTN_DEVICE void release_k(int it) const { mbar_arrive(bar(slot(it), 2)); }
  FLATATTN_DEVICE void release_v(int it) const { mbar_arrive(bar(slot(it), 3)); }

  // Q across tiles (kQEmpty): n counts the CTA's Q loads.
  FLATATTN_DEVICE void wait_q(int n) const { mbar_wait(q_bar(), static_cast<std::uint32_t>(n) & 1u, 999); }
  /// Every consumer thread, after its last access to the Q tile of this tile (the epilogue's stores through it): the
  /// proxy fence orders those generic-proxy accesses before the copy engine's (async-proxy) write of the next Q.
  FLATATTN_DEVICE void release_q() const {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    mbar_arrive(q_empty());
  }
  FLATATTN_DEVICE void acquire_q(int n) const { mbar_wait(q_empty(), (static_cast<std::uint32_t>(n) & 1u) ^ 1u, 998); }

  // producer
  FLATATTN_DEVICE void acquire_k(int it) const { mbar_wait(bar(slot(it), 2), phase(it) ^ 1u, 100 * slot(it) + 2); }
  FLATATTN_DEVICE void acquire_v(int it) const { mbar_wait(bar(slot(it), 3), phase(it) ^ 1u, 100 * slot(it) + 3); }
};

}  // namespace flatattn::cuda::sm90
