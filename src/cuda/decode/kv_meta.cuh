// The device side of the KV-cache metadata contract (include/flatattn/kvcache.h, issue 20): block_table,
// cache_seqlens, cache_batch_idx and cache_leftpad live on the GPU and are never trusted. Before a kernel
// reads or writes any cache row of sequence b it checks the sequence: the scalars (0 <= cache_seqlens[b],
// cache_seqlens[b] + Nnew <= capacity, the rotary table long enough for the positions, 0 <= leftpad <=
// cache_seqlens[b], 0 <= cache_batch_idx[b] < B_cache) and every block_table entry of the key range
// [leftpad, n_k) in [0, num_pages). A refused sequence is skipped whole (append and attention alike: the
// decode kernel's writer of new rows checks the whole range first) and flagged in the call's error word (common/seq_rows.h MetaError bits).
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/seq_rows.h"
#include "src/cuda/decode/decode_params.h"

// Varlen queries (DecodeParams::cu_seqlens_q): the sequence's rows [q0, q0 + nq) of the packed q/out come
// from common/seq_rows.h (bounded by total_q and the grid's nq whatever the offsets hold); bad offsets
// refuse the sequence like the cache metadata (kMetaCuQ, kMetaMaxQ).

namespace flatattn::cuda {

/// Sequence b after the scalar checks: its cache length before the call, its key count n_k = seqlen + Nnew,
/// its first key (leftpad) and, for a contiguous cache, its page (cache row). bad != 0: refused (n_k = 0).
struct KvSeq {
  int seqlen, n_k, lp, page;
  unsigned bad;
  int q0, nq;  ///< the sequence's first q/out row (batched: 0, with the batch stride) and its query count
};

FLATATTN_DEVICE KvSeq kv_seq(const DecodeParams& p, int b) {
  KvSeq s{p.cache_seqlens[b], 0, 0, 0, 0u, 0, p.nq};
  if (p.cu_seqlens_q != nullptr) {
    const SeqRows r = seq_rows(p.cu_seqlens_q, b, p.total_q, p.nq, kMetaCuQ, kMetaMaxQ);
    s.q0 = r.start;
    s.nq = r.len;
    s.bad |= r.bad;
  }
  const long long len = s.seqlen;
  if (len < 0 || len + p.nnew > p.capacity) s.bad |= kMetaCacheSeqlens;
  if (p.rotary_dim > 0) {
    // The rotary table must hold every position this call rotates (new_rows.cuh).
    const int span = p.nnew > (p.rotary_q_per_row ? p.nq : 1) ? p.nnew : (p.rotary_q_per_row ? p.nq : 1);
    if (len < 0 || len + span > p.rotary_max_position) s.bad |= kMetaCacheSeqlens;
  }
  if (p.cache_leftpad != nullptr) {
    s.lp = p.cache_leftpad[b];
    if (s.lp < 0 || s.lp > s.seqlen) s.bad |= kMetaCacheLeftpad;
  }
  if (p.block_table == nullptr) {
    s.page = p.cache_batch_idx != nullptr ? p.cache_batch_idx[b] : b;
    if (s.page < 0 || s.page >= p.num_pages) s.bad |= kMetaCacheBatchIdx;
  }
  if (s.bad != 0) {
    s.lp = 0;
    s.page = 0;
  } else {
    s.n_k = s.seqlen + p.nnew;
  }
  return s;
}

/// Page slot t / page_size and row t % page_size of key position t >= 0.
FLATATTN_DEVICE void page_split(const DecodeParams& p, int t, int& slot, int& row) {
  if (p.page_shift >= 0) {
    slot = t >> p.page_shift;
    row = t & (p.page_size - 1);
  } else {
    slot = t / p.page_size;
    row = t - slot * p.page_size;
  }
}

/// The page of slot `slot` of sequence b (s: its kv_seq); -1 when the block table names no page of the
/// cache (a refused sequence: callers never read it).
FLATATTN_DEVICE int page_of(const DecodeParams& p, const KvSeq& s, int b, int slot) {
  if (p.block_table == nullptr) return s.page;
  const int pg = __ldg(p.block_table + b * p.bt_stride + slot);
  return pg >= 0 && pg < p.num_pages ? pg : -1;
}

/// The CTA-wide check of sequence b: the scalars, then part `part` of `parts` of the block-table slots of
/// the key range [lp, n_k) (the parts of one sequence together cover every slot once). Returns the bits
/// (every thread the same; one __syncthreads pair) and flags them in p.meta_err (thread 0). `word`: a
/// __shared__ scratch word.
FLATATTN_DEVICE KvSeq check_seq(const DecodeParams& p, int b, int part, int parts, unsigned* word) {
  KvSeq s = kv_seq(p, b);
  if (threadIdx.x == 0) *word = s.bad;
  __syncthreads();
  if (s.bad == 0 && p.block_table != nullptr && s.n_k > s.lp) {
    int first, last, r;
    page_split(p, s.lp, first, r);
    page_split(p, s.n_k - 1, last, r);
    const int n = last - first + 1, per = (n + parts - 1) / parts;
    const int lo = first + part * per, hi = min(first + (part + 1) * per, last + 1);
    const int* row = p.block_table + b * p.bt_stride;
    bool bad = false;
    for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      const int pg = __ldg(row + i);
      bad = bad || pg < 0 || pg >= p.num_pages;
    }
    if (bad) atomicOr(word, kMetaBlockTable);
  }
  __syncthreads();
  s.bad = *word;
  if (s.bad != 0) {
    s.n_k = 0;
    s.lp = 0;
    if (threadIdx.x == 0 && p.meta_err != nullptr) atomicOr(p.meta_err, s.bad);
  }
  return s;
}

}  // namespace flatattn::cuda
