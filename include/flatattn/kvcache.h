// flatattn: attention over a KV cache (inference): paged or contiguous caches, in-place append with
// rotary embedding, decoding and chunked prefill. The semantics of FlashAttention-2's
// flash_attn_with_kvcache (flash_attn_interface.py, v2.6) and of vLLM's PagedAttention
// (Kwon et al., SOSP'23, Sec. 4: fixed-size KV blocks addressed through a block table).
//
// Shapes (B sequences, Nq new query tokens per sequence, the FlashAttention layout, last dim contiguous):
//   q            (B, Nq, Hq, D)                       f16/bf16 (CUDA), f32/f16/bf16 (CPU)
//   out          (B, Nq, Hq, D)                       q's dtype
//   lse          (B, Hq, Nq) fp32                      when Options::return_lse
//   k_cache, v_cache:
//     paged      (num_pages, page_size, Hkv, D)       any page_size >= 1; page p of sequence b is
//                                                     block_table[b, p] (int32 (B, max_pages))
//     contiguous (B_cache, capacity, Hkv, D)          sequence b is cache row cache_batch_idx[b]
//                                                     (int32 (B); absent: row b)
//   cache_seqlens int32 (B): tokens of sequence b already in the cache, before this call.
//   k_new, v_new  (B, Nnew, Hkv, D)                   optional: appended in place at cache_seqlens[b]
//   rotary_cos, rotary_sin (max_position, rotary_dim / 2), q's dtype, optional; only with k_new/v_new
//                (cached keys are stored rotated; FlashAttention-2 has the same rule).
//
// Semantics of one call, sequence b (identical on every backend; the fp64 oracle defines them):
//   1. Append: when k_new/v_new are given, token t of k_new[b]/v_new[b] (rotated, see 3) is written to
//      cache position cache_seqlens[b] + t. The cache is modified in place; cache_seqlens is not (the
//      caller advances it, as with FlashAttention-2).
//   2. Keys: positions [cache_leftpad[b], n_k) of the cache with n_k = cache_seqlens[b] + Nnew
//      (cache_leftpad absent: 0). Queries: Nq rows, aligned to the end of the keys: with causal, query i
//      sees keys j <= i + n_k - Nq (bottom-right alignment, as FlashAttention-2); windows likewise.
//      Options (scale, causal, window, softcap) and ForwardArgs-style ALiBi slopes / sinks as in forward().
//      Options::dropout_p > 0, CausalAlign::top_left and a forced Options::dataflow are refused (unsupported).
//      The rows appended by one call must be distinct (pages may be shared between sequences where they are
//      only read); a row appended by one sequence and read as cached by another in the same call is undefined.
//   3. Rotary (Su et al., RoFormer 2021, Sec. 3.4), when rotary_cos/sin are given: the first rotary_dim
//      channels of q and of the new keys are rotated; pairs (2c, 2c+1) when rotary_interleaved (GPT-J),
//      else (c, c + rotary_dim/2) (GPT-NeoX). New key t sits at position cache_seqlens[b] + t; query i at
//      cache_seqlens[b] + i when causal or a window is set, else every query at cache_seqlens[b]
//      (FlashAttention-2's rule). Cached keys are never rotated again. Rotated keys are stored in the
//      cache's dtype and rotated queries are rounded to q's dtype before the product (as FlashAttention-2,
//      which rotates q into a tensor of its dtype).
//   4. Split-KV: num_splits = 0 lets the planner choose how the key range is split across CTAs (CUDA)
//      or threads (CPU); n > 0 forces n (results equal within the rule for every n).
//
// Errors (Error naming the argument, before anything is written, the cache included): a dtype, shape,
// device or stride mismatch; page_size < 1; Nq < 1; rotary_dim odd or > D; on the CPU also every
// metadata value (a block_table entry the call reads or writes -- pages of positions [leftpad,
// cache_seqlens[b] + Nnew); later entries are never read -- outside [0, num_pages), cache_seqlens[b] + Nnew beyond the
// capacity max_pages * page_size (contiguous: capacity), cache_batch_idx outside [0, B_cache), a
// leftpad outside [0, cache_seqlens[b]], a rotated position without a rotary_cos row, two sequences
// appending to one cache row). docs/kvcache.md summarizes the contract. CUDA metadata lives on the device: as for varlen offsets
// (attention.h, Varlen) no value can make a kernel touch memory outside the tensors; a bad sequence is
// skipped and reported by the same error word (FLATATTN_CHECK_METADATA=1: synchronously).
//
// Varlen queries (paged / chunked prefill; FlashAttention-2's flash_attn_varlen_func with block_table),
// when KvCacheArgs::cu_seqlens_q is given:
//   q, out       (total_q, Hq, D): sequence b owns rows [cu_seqlens_q[b], cu_seqlens_q[b + 1]), Nq_b of them
//                (any Nq_b >= 0; B = cu_seqlens_q.shape[0] - 1)
//   lse          (Hq, total_q) fp32 (FlashAttention-2's varlen layout)
//   cu_seqlens_q int32 (B + 1): 0 = cu[0] <= cu[1] <= ... <= cu[B] = total_q
//   max_seqlen_q >= every Nq_b (0: total_q). CUDA sizes its grid by it; a longer sequence is refused.
//   cache_seqlens[b] is the sequence's key count (seqused_k): its keys are [cache_leftpad[b], cache_seqlens[b]),
//   and query i of b sees key j <= i + cache_seqlens[b] - Nq_b with causal (bottom-right per sequence).
//   No append (k_new/v_new and rotary are refused: append first with a batched call). On the CPU the
//   offsets are checked with the other metadata; on CUDA a sequence with bad offsets (or Nq_b >
//   max_seqlen_q) is skipped and reported through the error word (cu_seqlens_q / max_seqlen_q).
#pragma once

#include <cstdint>

#include "flatattn/attention.h"

namespace flatattn {

/// The cache a call reads (and appends to). Paged when block_table is present, contiguous otherwise.
struct KvCache {
  TensorView k_cache, v_cache;  ///< (num_pages, page_size, Hkv, D) or (B_cache, capacity, Hkv, D)
  TensorView block_table;       ///< int32 (B, max_pages), last dim contiguous; absent: contiguous cache
  TensorView cache_seqlens;     ///< int32 (B) contiguous: tokens in the cache before the call (required)
  TensorView cache_batch_idx;   ///< int32 (B): cache row of each sequence; contiguous caches only; absent: b
  TensorView cache_leftpad;     ///< int32 (B): first valid cache position of each sequence; absent: 0
};

/// Inputs and outputs of forward_kvcache(). out (lse when requested) and the appended cache rows are
/// written; nothing else is.
struct KvCacheArgs {
  TensorView q;                       ///< (B, Nq, Hq, D)
  KvCache cache;
  TensorView k_new, v_new;            ///< (B, Nnew, Hkv, D), both or neither
  TensorView rotary_cos, rotary_sin;  ///< (max_position, rotary_dim / 2), both or neither
  bool rotary_interleaved = false;    ///< GPT-J pairs (2c, 2c+1) instead of GPT-NeoX halves
  TensorView out;                     ///< (B, Nq, Hq, D)
  TensorView lse;                     ///< (B, Hq, Nq) fp32, iff Options::return_lse
  TensorView alibi_slopes;            ///< as ForwardArgs::alibi_slopes, (Hq) or (B, Hq)
  TensorView sinks;                   ///< as ForwardArgs::sinks, (Hq)
  int num_splits = 0;                 ///< split-KV count; 0: the planner's choice
  /// Varlen queries (see the file comment): int32 (B + 1) on q's device; absent: q is (B, Nq, Hq, D).
  TensorView cu_seqlens_q;
  std::int64_t max_seqlen_q = 0;      ///< varlen: the longest Nq_b (0: total_q); ignored otherwise
};

/// Attention of new queries against a KV cache (see the file comment for the full contract).
/// Runs on the device of the tensors; on CUDA asynchronous on `stream`. Report::kernel names the
/// decode kernel and its split count.
Report forward_kvcache(const KvCacheArgs& args, const Options& options = {}, Stream stream = {});

}  // namespace flatattn
