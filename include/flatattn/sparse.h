// flatattn: sparse attention masks -- block-sparse lists (the layout of PyTorch FlexAttention's BlockMask),
// bit-packed element masks inside partial blocks, and Longformer / BigBird local + global attention.
//
// One mechanism (docs/sparse.md): the keys of a query block are a list of key blocks instead of one
// contiguous range. Blocks that are not listed cost nothing (no load, no product); a listed *full* block is
// visible to every (row, key) pair inside the sequence; a listed *partial* block is visible where the
// element rule says so. The element rule is one of
//   - the band of Options (causal, causal_align, window): the default;
//   - a bit-packed mask of each partial block (BlockSparse::mask_bits);
//   - local + global (LocalGlobal; Beltagy et al., "Longformer", 2020, Sec. 3.1; Zaheer et al., "BigBird",
//     NeurIPS 2020, Sec. 2): the band of Options, plus every key for a global query row and every query
//     for a global key (never right of the diagonal with Options::causal).
// Element (i, j) of sequence b, query head h is visible iff j < Nk and i < Nq of the sequence, the block
// (i / block_q, j / block_kv) is listed for (b, h), and either it is listed as full or the rule holds.
// A row with no visible key gives O = 0 and LSE = -inf (zero gradients), as every masked row.
// Backends: CPU forward and backward, every rule. CUDA: the forward and the backward (Flash kernels of the sm80
// and sm90 families), with the caller's lists or with lists the library derives (local + global without
// BlockSparse; the backward's q lists when absent), which CUDA builds on the device on the call's stream (no
// host synchronization: CUDA-graph capturable) from the same per-block rule as the CPU, so both backends list
// the same blocks. CUDA list and position contents are not checked on the device.
#pragma once

#include <cstdint>

#include "flatattn/tensor.h"

namespace flatattn {

/// Block-sparse key lists of a call (FlexAttention's BlockMask fields, same names and layout).
///
/// Blocks: query block r holds query rows [r block_q, (r + 1) block_q) of a sequence, key block c the
/// keys [c block_kv, (c + 1) block_kv); NQB = ceil(Nq / block_q), NKB = ceil(Nk / block_kv) with the
/// call's Nq, Nk (varlen: max_seqlen_q / max_seqlen_k; the lists are per sequence, in its own rows).
/// block_q and block_kv must be multiples of the kernel tile on CUDA (128 x 128 is a multiple of every
/// family's; the Error names the argument and the tile), any positive size on the CPU.
///
/// Every tensor is int32 on q's device, last dim contiguous; B' is 1 or B (broadcast over sequences),
/// H' is 1 or Hq (broadcast over query heads):
///   kv_num_blocks      (B', H', NQB)        partial key blocks of query block r (count)
///   kv_indices         (B', H', NQB, W)     their indices, the first kv_num_blocks[b, h, r] of the row,
///                                           strictly increasing, each in [0, NKB); W >= the largest count
///   full_kv_num_blocks (B', H', NQB)        optional: full key blocks (no element mask)
///   full_kv_indices    (B', H', NQB, W')    optional: their indices (disjoint from the partial ones)
///   q_num_blocks, q_indices, full_q_num_blocks, full_q_indices: the transposed lists (per key block c,
///     the query blocks that list c), (B', H', NKB) and (B', H', NKB, W''), for the backward. Optional:
///     absent, the library derives them from the kv lists (CUDA: on the device, into a stream-ordered
///     workspace of up to 8 B' H' NKB (NQB + 1) bytes for the call); given, they must be their exact
///     transpose (checked on CPU).
///   mask_bits          (P, block_q, ceil(block_kv / 32)) optional: the element rule of partial blocks as
///                      bits: word w of row t of bit-block p holds keys 32 w .. 32 w + 31 of the block, bit
///                      (key % 32) set = visible. The partial block in slot s of row (b, h, r) of kv_indices
///                      has bit-block mask_block_offsets[b, h, r] + s. O(partial blocks) memory.
///   mask_block_offsets (B', H', NQB)        required with mask_bits.
/// Errors (flatattn::Error naming the tensor, nothing written): wrong dtype, rank, shape or device, a block
/// size that is not positive or not a multiple of the tile, a count above W or NKB, an index outside
/// [0, NKB), non-increasing (or duplicated) indices, a block both partial and full, a bit-block outside
/// mask_bits. The contents are checked where they are readable by the host (CPU tensors).
struct BlockSparse {
  std::int64_t block_q = 128;   ///< query rows per block (FlexAttention's Q_BLOCK_SIZE)
  std::int64_t block_kv = 128;  ///< keys per block (KV_BLOCK_SIZE)
  TensorView kv_num_blocks, kv_indices;
  TensorView full_kv_num_blocks, full_kv_indices;
  TensorView q_num_blocks, q_indices;
  TensorView full_q_num_blocks, full_q_indices;
  TensorView mask_bits, mask_block_offsets;
};

/// Local + global attention (Longformer, BigBird): the band of Options is the local window (e.g.
/// Options::window = {256, 256} for Longformer's window 512), and the positions listed here are global:
/// query row p sees every key and key p is seen by every query (with Options::causal: only keys j <= the
/// diagonal of the row). Positions are within each sequence (varlen: its own rows), strictly increasing.
///   global_positions (B', G) int32: the global positions of sequence b (B' = 1: the same for all);
///   global_counts    (B')    int32, optional: how many of the row are used (absent: G).
/// With BlockSparse: the element rule of its partial blocks (BigBird: random blocks + window + global).
/// Without: the library derives the block lists itself (the blocks the window touches, plus the global
/// rows and columns) with block_q = block_kv = 128 (CUDA: on the device, 8 B NQB (NKB + 1) bytes of
/// stream-ordered workspace for the call, plus the q lists' for a backward). On CUDA the positions and
/// counts are read on the device unchecked: the derivation clamps counts to [0, G] and reads nothing outside
/// the tensors whatever they hold, but unsorted, repeated or out-of-range positions give unspecified lists and
/// results, and the kernels' element rule reads global_counts as given (keep them in [0, G], as the CPU
/// requires).
struct LocalGlobal {
  TensorView global_positions;
  TensorView global_counts;
};

}  // namespace flatattn
