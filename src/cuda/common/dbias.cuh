// The additive bias's gradient on the backward kernels: dbias = dS, the logit's gradient (BiasScore,
// src/core/variant.h), which both backward kernels form per tile in registers. Each element of a visible
// (b, h, i, j) is written once per (b, h) by the CTA that owns its key block: plain stores into a bias of
// full (B, Hq, Nq) (or into the deterministic mode's (B, Hq, Nq, Nk) fp32 workspace), fp32 atomics into the
// workspace of a broadcast bias (BwdParams::dbias_atomic). Per-fragment stores: a thread holds two adjacent
// keys of a query (query-major) or two queries of a key (key-major), so the stores are 4- or 8-byte
// pieces of 32-byte sectors; the bias's bytes are written once either way (dS is not staged through shared
// memory for wider stores: measuring whether that pays is open).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/bwd_params.h"

namespace flatattn::cuda {

/// dS of (sequence b, query head h, query i, key j) into dbias; nothing outside the sequence's rows and keys
/// (nq, nk) or the bias's extents.
FLATATTN_DEVICE void store_dbias(const BwdParams& p, int b, int h, int i, int j, int nq, int nk, float x) {
  if (i >= nq || j >= nk || i >= p.f.var.bias_nq || j >= p.f.var.bias_nk) return;
  // The offset within the (b, h) slice in 32 bits, as bias_at (src/cuda/check_args.cc bounds it below 2^32).
  const unsigned in_slice = static_cast<unsigned>(i) * static_cast<unsigned>(p.dbias_i) + static_cast<unsigned>(j);
  const std::int64_t off = (b * p.dbias_b + h * p.dbias_h) + in_slice;
  if (p.dbias_atomic) {
    atomicAdd(static_cast<float*>(p.dbias) + off, x);
  } else if (p.dbias_dtype == 0) {
    static_cast<float*>(p.dbias)[off] = x;
  } else if (p.dbias_dtype == 2) {
    static_cast<__nv_bfloat16*>(p.dbias)[off] = __float2bfloat16_rn(x);
  } else {
    static_cast<__half*>(p.dbias)[off] = __float2half_rn(x);
  }
}

/// dS of a block of accumulator fragments in the m16n8 C layout (for_each_element's, common/score.cuh):
/// element e of fragment (mt, nt) at row row0 + 16 mt + 8 (e / 2), column col0 + 8 nt + (e % 2); rows are
/// queries and columns keys when QueryMajor, else rows are keys (the sm90 backward's S^T).
template <bool QueryMajor, int kMT, int kNT>
FLATATTN_DEVICE void store_dbias_frags(const BwdParams& p, const float (&ds)[kMT][kNT][4], int b, int h, int row0,
                                       int col0, int nq, int nk) {
  if (p.dbias == nullptr) return;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = row0 + mt * 16 + 8 * (e >> 1), c = col0 + nt * 8 + (e & 1);
        store_dbias(p, b, h, QueryMajor ? r : c, QueryMajor ? c : r, nq, nk, ds[mt][nt][e]);
      }
}

}  // namespace flatattn::cuda
