// Varlen metadata is read on the device and never trusted: the packed rows of sequence b, bounded by the
// row counts the host knows from the tensor shapes, and the error bits of the metadata check. Plain C++
// (host and device), so the host names the bits (src/cuda/meta_check.cc) and tests run it without a GPU.
#pragma once

#include "src/core/mask.h"  // FLATATTN_HD

namespace flatattn::cuda {

/// Bits of the metadata error word: which argument a kernel found invalid (bit i names the i-th of
/// cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_table, cache_seqlens, cache_batch_idx,
/// cache_leftpad; src/cuda/meta_check.cc).
enum MetaError : unsigned {
  kMetaCuQ = 1u,   ///< cu_seqlens_q: cu[0] != 0, decreasing, negative, or past total_q
  kMetaCuK = 2u,   ///< cu_seqlens_k: the same against total_k
  kMetaMaxQ = 4u,  ///< max_seqlen_q smaller than a query length
  kMetaMaxK = 8u,  ///< max_seqlen_k smaller than a key length
  // forward_kvcache (src/cuda/decode/kv_meta.cuh): the cache metadata of a sequence.
  kMetaBlockTable = 16u,     ///< block_table: an entry of the sequence's key range outside [0, num_pages)
  kMetaCacheSeqlens = 32u,   ///< cache_seqlens: negative, + Nnew beyond the capacity, or past the rotary table
  kMetaCacheBatchIdx = 64u,  ///< cache_batch_idx: outside [0, B_cache)
  kMetaCacheLeftpad = 128u,  ///< cache_leftpad: outside [0, cache_seqlens[b]]
};

/// The packed rows [start, start + len) of one sequence, and why it was refused (0: valid).
struct SeqRows {
  int start, len;
  unsigned bad;
};

/// Sequence b's rows from offsets cu (reads cu[b] and cu[b + 1] only), with 0 <= start <= start + len <=
/// total whatever cu holds. A pair out of order or range (or a first offset other than 0) gives len 0 and
/// bad = bad_cu; a length above max_len (max_seqlen: the grid covers that many rows) gives len 0 and
/// bad = bad_max.
FLATATTN_HD SeqRows seq_rows(const int* cu, int b, int total, int max_len, unsigned bad_cu, unsigned bad_max) {
  const int a = cu[b], e = cu[b + 1];
  if (a < 0 || e < a || e > total || (b == 0 && a != 0)) return {a < 0 ? 0 : (a > total ? total : a), 0, bad_cu};
  if (e - a > max_len) return {a, 0, bad_max};
  return {a, e - a, 0u};
}

}  // namespace flatattn::cuda
