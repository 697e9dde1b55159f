// Where one CTA's sequence lives: batched (fixed lengths) or varlen (cu_seqlens), and the element
// offsets of its q/k/v/out/lse rows for one query head.
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/params.h"

namespace flatattn::cuda {

struct BlockInfo {
  int nq, nk;                               ///< this sequence's lengths
  std::int64_t q, k, v, o, lse;             ///< element offset of row 0 of this (sequence, head)

  FLATATTN_DEVICE BlockInfo(const FwdParams& p, int b, int h) {
    const int hk = h / p.group;
    std::int64_t q0 = 0, k0 = 0;
    if (p.cu_q != nullptr) {
      q0 = p.cu_q[b];
      k0 = p.cu_k[b];
      nq = p.cu_q[b + 1] - p.cu_q[b];
      nk = p.cu_k[b + 1] - p.cu_k[b];
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
