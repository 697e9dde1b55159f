// Where one CTA's sequence lives: batched (fixed lengths) or varlen (cu_seqlens), and the element
// offsets of its q/k/v/out/lse rows for one query head. Varlen metadata lives on the GPU and is never
// trusted: seq_rows (common/seq_rows.h) bounds every sequence by the packed rows the host knows from the
// tensor shapes, and BlockInfo records a violation in the call's metadata error word (src/cuda/meta_check.h).
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/seq_rows.h"

namespace flatattn::cuda {

struct BlockInfo {
  int nq, nk;                               ///< this sequence's lengths
  std::int64_t q, k, v, o, lse;             ///< element offset of row 0 of this (sequence, head)
  int q_row0 = 0, k_row0 = 0;               ///< varlen: the sequence's first packed q and k row (batched: 0)

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
      q_row0 = rq.start;
      k_row0 = rk.start;
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
