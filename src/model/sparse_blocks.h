// What a sparse call (docs/sparse.md) leaves to the kernels, as the GPU cost model counts it: the key blocks
// each query block visits and the visible (query, key) pairs. This is the one place where the model sees
// sparsity; predict() (gpu_kernel.cc) takes its tensor, softmax, shared-memory and L2 -> SM work per visited
// key block from here, and AttnShape::flops() its FLOPs.
//
// The masks (AttnShape::density, AttnShape::globals):
//   dense                the band of src/core/mask.h: key blocks lo(first row) / bn .. hi(last row) / bn.
//   block-sparse (P)     FlexAttention-style lists that keep a share P of the band's key blocks in every
//                        query block (the expected count of `flatattn run --density P`'s random lists; the band
//                        still rules inside a block). Visited and partial blocks, and visible pairs, x P.
//   local + global (G)   Longformer (Beltagy et al. 2020, Sec. 3.1): the band's blocks, plus every key block
//                        for a query block holding a global row, plus the key blocks holding a global key; with
//                        causal, only blocks starting at or left of the diagonal of the query block's last row.
//                        This is the rule of the library's derived lists (local_global_block, src/core/
//                        sparse_rows.h): at 128 x 128 tiles the model visits exactly the listed blocks
//                        (tests/model/test_sparse_plan.cc). Exact visible pairs; the extra blocks count as partial.
// Counting is at the kernel variant's own tiles (block_m x bn), while the library derives local + global lists
// with 128 x 128 blocks: for a variant with smaller tiles the model visits no more than the kernel does.
// What does not scale: Q and O are read and written once per query block whatever the mask, and K/V reach DRAM
// once per KV head (L2 holds them), since some query block visits almost every key block.
#pragma once

#include <cstdint>

#include "src/model/gpu_kernel.h"

namespace flatattn::model {

/// Key blocks of bn keys that the query block of rows [r0, r1] (inclusive) of shape s visits. Fractional
/// under block-sparse density (an expected count).
struct KeyBlocks {
  double visited = 0;  ///< blocks loaded and multiplied
  double partial = 0;  ///< of those, blocks masked per element (the rest are full)
};
KeyBlocks key_blocks(const AttnShape& s, std::int64_t r0, std::int64_t r1, std::int64_t bn);

/// Visible (query, key) pairs of one (sequence, head) of shape s: the band's, the local + global rule's, times
/// the density for block-sparse. AttnShape::flops() is 4 D Hq B times this.
double visible_pairs(const AttnShape& s);

}  // namespace flatattn::model
