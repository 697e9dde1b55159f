// 16-byte (and 4-byte) global -> shared copies. SASS families (sm_80+): cp.async (asynchronous, L2 only,
// zero-fill when the predicate is off) grouped with commit/wait. sm75 family: a plain 16-byte load and store, and the
// group operations are no-ops (the loads are complete when the copy returns).
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

/// Copies 16 bytes from `gmem` to the shared address `smem_addr`, or writes 16 zero bytes when !pred
/// (gmem is then not read, but must still be a valid address: callers pass the tensor's base).
FLATATTN_DEVICE void copy_16(std::uint32_t smem_addr, const void* gmem, bool pred) {
#if FLATATTN_SM75_PATH
  uint4 v = make_uint4(0, 0, 0, 0);
  if (pred) v = __ldg(reinterpret_cast<const uint4*>(gmem));
  asm volatile("st.shared.v4.u32 [%0], {%1,%2,%3,%4};\n" ::"r"(smem_addr), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w));
#else
  const int src_bytes = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr), "l"(gmem), "r"(src_bytes));
#endif
}

/// Copies 4 bytes from `gmem` to the shared address `smem_addr`, or writes 0 when !pred (the same
/// grouping as copy_16; cp.async.ca on the SASS families).
FLATATTN_DEVICE void copy_4(std::uint32_t smem_addr, const void* gmem, bool pred) {
#if FLATATTN_SM75_PATH
  const std::uint32_t v = pred ? __ldg(reinterpret_cast<const unsigned*>(gmem)) : 0u;
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(smem_addr), "r"(v));
#else
  const int src_bytes = pred ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr), "l"(gmem), "r"(src_bytes));
#endif
}

/// Closes the group of copies issued since the last commit.
FLATATTN_DEVICE void copy_commit() {
#if !FLATATTN_SM75_PATH
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

/// Waits until at most `N` committed groups are still in flight (this thread's copies only: a
/// __syncthreads() must follow before other threads read the data).
template <int N>
FLATATTN_DEVICE void copy_wait() {
#if !FLATATTN_SM75_PATH
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

FLATATTN_DEVICE std::uint32_t smem_u32(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

}  // namespace flatattn::cuda
