// Bulk reductions from shared memory into global memory on sm_90 (PTX ISA 8.0, "cp.reduce.async.bulk"): the copy
// engine reads `bytes` contiguous bytes of shared memory and adds them, as fp32, element by element into global
// memory, asynchronously to the issuing thread. The backward's dQ accumulation uses it (sm90/bwd_kernel.cuh), as
// FlashAttention-3 does (Shah et al. 2024, Sec. 3.3 of its backward), instead of one red.global per column pair from
// registers: those keep their source registers busy until the load/store unit drains them, and the next step's
// first writes to those registers stalled on it (ncu, bench/results/dropout-peers-h100-7a7d615.md).
// Completion is per thread, in bulk groups: commit after issuing, and wait (`.read`: until the shared source may be
// overwritten; without: until the global writes are done) before reusing the buffer or leaving the kernel.
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda::sm90 {

/// dst[i] += src[i] for the bytes / 4 floats at shared address src (16-byte aligned) and global dst (16-byte aligned);
/// bytes a multiple of 16. The shared writes it reads must have been made visible to the async proxy
/// (fence.proxy.async.shared::cta, then a barrier when other threads wrote them).
FLATATTN_DEVICE void bulk_reduce_add_f32(float* dst, std::uint32_t src, std::uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src),
               "r"(bytes)
               : "memory");
}

/// Closes this thread's bulk operations issued since the last commit into one group.
FLATATTN_DEVICE void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

/// Waits until at most N of this thread's committed groups still read their shared source.
template <int N>
FLATATTN_DEVICE void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}

/// Waits until at most N of this thread's committed groups are incomplete (their global writes included).
template <int N>
FLATATTN_DEVICE void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace flatattn::cuda::sm90
