// Cluster-FLAT decoding's merge (sm_90): the CTAs of one thread-block cluster hold the splits of one
// (sequence, kv head, row block); each has reduced its own key range to (max, sum, unnormalized O) per row in
// its shared memory. After a cluster barrier every CTA reads its peers' rows through distributed shared
// memory (cooperative_groups' map_shared_rank: mapa + ld.shared::cluster) and merges a 1/cluster share of the
// output columns: the row's softmax over the whole key range, exact (the max of all CTAs is known before any
// partial is rescaled, FLAT's full-row rule, Kao et al. Sec. 4, at cluster scale), then the sink and the
// output. No partials in HBM and no combine kernel. A second barrier keeps each CTA's shared memory alive
// until its peers have read it. A sequence refused by any CTA's metadata check is not written.
#pragma once

#include <cooperative_groups.h>

#include <cmath>
#include <cstdint>

#include "src/cuda/common/dtype.cuh"
#include "src/cuda/decode/decode_params.h"
#include "src/cuda/decode/row_finish.cuh"

namespace flatattn::cuda {

/// cta_o: (16, D) fp32 rows relative to cta_m (log2 units, -inf: no key), cta_l their sums, bad: the CTA's
/// metadata bits; rows r_base .. of kv head hk of sequence b (rows of it, its queries from q/out row q0).
/// Every thread of every CTA of the cluster calls it.
template <class E, int D>
FLATATTN_DEVICE void cluster_merge(const DecodeParams& p, int b, int hk, int r_base, int rows, int q0, float* cta_o,
                                   float* cta_m, float* cta_l, unsigned* bad) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  using T = typename E::T;
  constexpr int kRows = 16, kDT = D / 8;
  cg::cluster_group cl = cg::this_cluster();
  cl.sync();
  const int n = static_cast<int>(cl.num_blocks()), rank = static_cast<int>(cl.block_rank());
  unsigned any_bad = 0;
  for (int q = 0; q < n; ++q) any_bad |= *cl.map_shared_rank(bad, q);
  if (any_bad == 0) {
    for (int idx = rank + n * static_cast<int>(threadIdx.x); idx < kRows * kDT; idx += n * static_cast<int>(blockDim.x)) {
      const int r = idx / kDT, c = (idx - r * kDT) * 8;
      if (r_base + r >= rows) continue;
      float mx = -INFINITY;
      for (int q = 0; q < n; ++q) mx = fmaxf(mx, cl.map_shared_rank(cta_m, q)[r]);
      float sum = 0.f, acc[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] = 0.f;
      for (int q = 0; q < n; ++q) {
        const float mq = cl.map_shared_rank(cta_m, q)[r];
        const float w = mq == -INFINITY ? 0.f : ex2(mq - mx);
        sum += w * cl.map_shared_rank(cta_l, q)[r];
        const float4* src = reinterpret_cast<const float4*>(cl.map_shared_rank(cta_o, q) + r * D + c);
        const float4 x0 = src[0], x1 = src[1];
        acc[0] += w * x0.x, acc[1] += w * x0.y, acc[2] += w * x0.z, acc[3] += w * x0.w;
        acc[4] += w * x1.x, acc[5] += w * x1.y, acc[6] += w * x1.z, acc[7] += w * x1.w;
      }
      const int i = (r_base + r) / p.group, h = hk * p.group + (r_base + r - i * p.group);
      float inv, lse;
      finish_row(mx, sum, p.sinks, h, inv, lse);
      uint4 v;
      v.x = E::pack(acc[0] * inv, acc[1] * inv);
      v.y = E::pack(acc[2] * inv, acc[3] * inv);
      v.z = E::pack(acc[4] * inv, acc[5] * inv);
      v.w = E::pack(acc[6] * inv, acc[7] * inv);
      *reinterpret_cast<uint4*>(static_cast<T*>(p.o) + b * p.o_b + (q0 + i) * p.o_n + h * p.o_h + c) = v;
      if (c == 0 && p.lse != nullptr) p.lse[b * p.lse_b + h * p.lse_h + (q0 + i) * p.lse_n] = lse;
    }
  }
  cl.sync();
#else
  __trap();  // cluster launches are sm_90 only (forward_kvcache.cc never launches this elsewhere)
#endif
}

}  // namespace flatattn::cuda
