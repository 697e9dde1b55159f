// Where one CTA's sequence lives: batched (fixed lengths) or varlen (cu_seqlens), and the element
// offsets of its q/k/v/out/lse rows for one query head. Varlen metadata lives on the GPU and is never
// trusted: seq_rows bounds every sequence by the packed rows the host knows from the tensor shapes, and
// BlockInfo records a violation in the call's metadata error word (src/cuda/meta_check.h).
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/params.h"

namespace flatattn::cuda {

/// Bits of the metadata error word: which argument a kernel found invalid (named on the host by
/// src/cuda/meta_check.cc).
enum MetaError : unsigned {
  kMetaCuQ = 1u,   ///< cu_seqlens_q: cu[0] != 0, decreasing, negative, or past total_q
  kMetaCuK = 2u,   ///< cu_seqlens_k: the same against total_k
  kMetaMaxQ = 4u,  ///< max_seqlen_q smaller than a query length
  kMetaMaxK = 8u,  ///< max_seqlen_k smaller than a key length
};

/// The packed rows [start, start + len) of sequence b, with 0 <= start <= start + len <= total whatever
/// cu holds. A pair that is out of order or range (or a first offset other than 0) gives len 0 and
/// bad = bad_cu; a length above max_len (max_seqlen: the grid covers that many rows) gives len 0 and
/// bad = bad_max. Reads cu[b] and cu[b + 1] only.
struct SeqRows {
  int start, len;
  unsigned bad;
};

FLATATTN_DEVICE SeqRows seq_rows(const int* cu, int b, int total, int max_len, unsigned bad_cu, unsigned bad_max) {
  const int a = cu[b], e = cu[b + 1];
  if (a < 0 || e < a || e > total || (b == 0 && a != 0)) return {min(max(a, 0), total), 0, bad_cu};
  if (e - a > max_len) return {a, 0, bad_max};
  return {a, e - a, 0u};
}

struct BlockInfo {
  int nq, nk;                               ///< this sequence's lengths
  std::int64_t q, k, v, o, lse;             ///< element offset of row 0 of this (sequence, head)

  FLATATTN_DEVICE BlockInfo(const FwdParams& p, int b, int h) {
    const int hk = h / p.group;
    std::int64_t q0 = 0, k0 = 0;
    if (p.cu_q != nullptr) {
      // A sequence whose q or k rows are invalid is skipped (both lengths 0: nothing of it is read or
      // written, see include/flatattn/attention.h) and flagged, one atomic per warp.
      const SeqRows rq = seq_rows(p.cu_q, b, p.total_q, p.nq, kMetaCuQ, kMetaMaxQ);
      const SeqRows rk = seq_rows(p.cu_k, b, p.total_k, p.nk, kMetaCuK, kMetaMaxK);
      const unsigned bad = rq.bad | rk.bad;
      q0 = rq.start;
      k0 = rk.start;
      nq = bad != 0 ? 0 : rq.len;
      nk = bad != 0 ? 0 : rk.len;
      if (bad != 0 && p.meta_err != nullptr && (threadIdx.x & 31) == 0) atomicOr(p.meta_err, bad);
      b = 0;  // varlen rows are packed: no batch stride
    } else {
      nq = p.nq;
      nk = p.nk;
    }
    q = b * p.q_b + q0 * p.q_n + h * p.q_h;
    o = b * p.o_b + q0 * p.o_n + h * p.o_h;
    lse = b * p.lse_b + q0 * p.lse_n + h * p.lse_h;
    k = b * p.k_b + k0 * p.k_n + hk * p.k_h;
    v = b * p.v_b + k0 * p.v_n + hk * p.v_h;
  }
};

}  // namespace flatattn::cuda
