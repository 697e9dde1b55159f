// Bulk asynchronous reductions from shared to global memory (sm_90 TMA unit, PTX cp.reduce.async.bulk):
// the backward's dQ rows leave the CTA as a few bulk fp32 additions issued by one warp instead of one
// red.global per pair of elements from every thread (FlashAttention-3's dQ path does the same). The
// issuing thread tracks its reductions as bulk async-groups: wait_read before the source tile is
// overwritten, wait_all before the CTA exits.
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda::sm90 {

/// dst[0 .. bytes / 4) += src (fp32; src a shared address, both 16-byte aligned, bytes % 16 == 0).
FLATATTN_DEVICE void bulk_reduce_add_f32(float* dst, std::uint32_t src, int bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src),
               "r"(bytes)
               : "memory");
}

/// Closes this thread's reductions issued so far into one bulk async-group.
FLATATTN_DEVICE void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

/// Waits until every group of this thread has read its shared-memory source.
FLATATTN_DEVICE void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }

/// Waits until every group of this thread is complete (its writes performed).
FLATATTN_DEVICE void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

}  // namespace flatattn::cuda::sm90
