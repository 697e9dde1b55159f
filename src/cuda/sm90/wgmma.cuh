// Warpgroup MMA (sm_90a) on the SmemTile layout: shared-memory matrix descriptors, the ordering
// instructions, and the two products of attention for one warpgroup (64 query rows):
//   S = Q K^T : A = the warpgroup's 64 Q rows, B = the key block, both from shared memory, K-major
//   O += P V  : A = P from registers (the packed S accumulators: the accumulator layout of each warp is
//               the m16n8 C layout, so pack_p of common/warp_gemm.cuh gives the register A fragment),
//               B = V from shared memory, MN-major (V is [keys][D], D contiguous: transposed operand)
//
// SmemTile<Rows, D> with W = 64 (D a multiple of 64) is the canonical 128-byte-swizzle layout when the
// tile starts 1024-byte aligned: 8 rows x 128 bytes per 1024-byte atom, the 16-byte chunk index XORed
// with row % 8, 64-column panels of Rows x 128 bytes one after another. Descriptor fields (PTX ISA,
// "Matrix Descriptor Format"): start address >> 4 (bits 0-13), leading byte offset >> 4 (16-29),
// stride byte offset >> 4 (32-45), swizzle mode 1 = 128B (bits 62-63).
//   K-major (Q, K): SBO = 1024 (8-row groups); LBO unused (a k16 step stays inside one 128-byte row);
//                   k-step kk inside a panel starts 32 * kk bytes further (the hardware applies the
//                   swizzle to the final address), the next 64 columns one panel further.
//   MN-major (V):   SBO = 1024 (8-key groups along K), LBO = the panel size (the next 64 columns of D);
//                   k-step kk (16 keys) starts 16 * 128 * kk bytes further.
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/sm90/wgmma_ops.cuh"

namespace flatattn::cuda::sm90 {

/// Descriptor of a 128-byte-swizzled operand starting at shared address `addr` (1024-byte aligned
/// pattern base; addr itself may sit 32/64/96 bytes into a row for the k-steps).
FLATATTN_DEVICE std::uint64_t desc_sw128(std::uint32_t addr, std::uint32_t lbo, std::uint32_t sbo) {
  return static_cast<std::uint64_t>((addr & 0x3FFFFu) >> 4) | (static_cast<std::uint64_t>(lbo >> 4) << 16) |
         (static_cast<std::uint64_t>(sbo >> 4) << 32) | (std::uint64_t{1} << 62);
}

/// Orders this thread's earlier register writes (accumulators, A fragments) before the next wgmma.
FLATATTN_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
FLATATTN_DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/// Waits until at most N of this warpgroup's committed wgmma groups are pending.
template <int N>
FLATATTN_DEVICE void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/// Shared memory written through the generic proxy (cp.async, st.shared) becomes visible to the async
/// proxy (wgmma operand reads) once each writer executes this before the barrier that publishes it.
FLATATTN_DEVICE void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/// Pins accumulator registers: the compiler may not move their reads above (or writes below) this
/// point, so code between a wgmma and its wait_group never touches the registers in flight.
template <int kN>
FLATATTN_DEVICE void fence_regs(float (&d)[kN][4]) {
#pragma unroll
  for (int i = 0; i < kN; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[i][e])::"memory");
}

/// fence_regs for register A fragments: keeps them live (and their registers untouched) until here.
template <int kN>
FLATATTN_DEVICE void fence_regs(std::uint32_t (&a)[kN][4]) {
#pragma unroll
  for (int i = 0; i < kN; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[i][e])::"memory");
}

/// fence_regs for four single values (row statistics).
FLATATTN_DEVICE void fence_vals(float& a, float& b, float& c, float& d) {
  asm volatile("" : "+f"(a), "+f"(b), "+f"(c), "+f"(d)::"memory");
}

/// s = Q_wg K^T for one warpgroup: sq_wg = shared address of the warpgroup's first Q row (1024-byte
/// aligned), sk = the K tile; TQ / TK the tiles' SmemTile types (for the panel sizes). Issues D / 16
/// wgmmas and commits them as one group (not waited).
template <class E, class TQ, class TK, int kBlockN, int kD>
FLATATTN_DEVICE void gemm_qk_issue(float (&s)[kBlockN / 8][4], std::uint32_t sq_wg, std::uint32_t sk) {
  static_assert(TQ::kW == 64 && TK::kW == 64, "128-byte swizzle needs 64-column panels");
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    const std::uint32_t koff = (kk % 4) * 32u;  // k16 step inside the 128-byte row
    const std::uint64_t a = desc_sw128(sq_wg + (kk / 4) * TQ::kBlockBytes + koff, 16, 1024);
    const std::uint64_t b = desc_sw128(sk + (kk / 4) * TK::kBlockBytes + koff, 16, 1024);
    Wgmma<E, kBlockN>::ss(s, a, b, kk > 0 ? 1 : 0);
  }
  wgmma_commit();
}

/// o += P V for one warpgroup: p = packed probabilities (k-step kk: the A fragment of keys 16kk..16kk+15),
/// sv = the V tile. Issues kBlockN / 16 wgmmas and commits them as one group (not waited).
template <class E, class TV, int kBlockN, int kD>
FLATATTN_DEVICE void gemm_pv_issue(float (&o)[kD / 8][4], const std::uint32_t (&p)[kBlockN / 16][4],
                                   std::uint32_t sv) {
  static_assert(TV::kW == 64, "128-byte swizzle needs 64-column panels");
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const std::uint64_t b = desc_sw128(sv + kk * 16 * TV::kRowBytes, TV::kBlockBytes, 1024);
    Wgmma<E, kD>::rs(o, p[kk], b, 1);
  }
  wgmma_commit();
}

}  // namespace flatattn::cuda::sm90
