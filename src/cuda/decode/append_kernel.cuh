// The append step of forward_kvcache (include/flatattn/kvcache.h, semantics 1 and 3): new key/value token t
// of sequence b is written to cache position cache_seqlens[b] + t, the keys rotated (RoPE) when rotary is on;
// the queries are rotated into a contiguous copy (B, Nq, Hq, D) in the call's workspace that the decode
// kernel then reads. One CTA per (kv head, sequence); it checks the sequence first (kv_meta.cuh) and writes
// nothing for a refused one, so no metadata value makes it write outside the cache. Stream-ordered, no
// host synchronization: capturable in a CUDA graph.
#pragma once

#include <cstdint>

#include "src/core/rotary.h"
#include "src/cuda/common/dtype.cuh"
#include "src/cuda/common/pdl.cuh"
#include "src/cuda/decode/kv_meta.cuh"

namespace flatattn::cuda {

template <class E>
FLATATTN_DEVICE float to_float(typename E::T x) {
  if constexpr (E::kIsBf16) {
    return __bfloat162float(x);
  } else {
    return __half2float(x);
  }
}

template <class E>
FLATATTN_DEVICE typename E::T from_float(float x) {
  if constexpr (E::kIsBf16) {
    return __float2bfloat16_rn(x);
  } else {
    return __float2half_rn(x);
  }
}

/// Row dst (D elements) = row src rotated at position pos (src/core/rotary.h: the pairs of rotary_dim, fp32
/// math, one rounding to the storage dtype) or copied when rotary is off; the CTA's threads share the work.
template <class E>
FLATATTN_DEVICE void rotate_copy(typename E::T* dst, const typename E::T* src, std::int64_t pos, const AppendParams& a) {
  using T = typename E::T;
  const int rd = a.rotary_cos != nullptr ? a.kv.rotary_dim : 0, half = rd / 2;
  const T* cs = rd > 0 ? static_cast<const T*>(a.rotary_cos) + pos * a.rot_stride : nullptr;
  const T* sn = rd > 0 ? static_cast<const T*>(a.rotary_sin) + pos * a.rot_stride : nullptr;
  for (int idx = threadIdx.x; idx < half + (a.kv.d - rd); idx += blockDim.x) {
    if (idx < half) {
      const RotaryPair pr = rotary_pair(idx, rd, a.interleaved != 0);
      const Rotated<float> r = rotate_pair<float>(to_float<E>(src[pr.a]), to_float<E>(src[pr.b]), to_float<E>(cs[idx]),
                                                  to_float<E>(sn[idx]));
      dst[pr.a] = from_float<E>(r.a);
      dst[pr.b] = from_float<E>(r.b);
    } else {
      const int e = rd + (idx - half);
      dst[e] = src[e];
    }
  }
}

template <class E>
__global__ void __launch_bounds__(128) kv_append_kernel(const AppendParams a) {
  using T = typename E::T;
  __shared__ unsigned word;
  const DecodeParams& p = a.kv;
  const int hk = blockIdx.x, b = blockIdx.y;
  pdl_wait();  // launched with PDL (common/pdl.cuh): nothing global before the previous kernel has completed
  pdl_launch_dependents();
  const KvSeq s = check_seq(p, b, 0, 1, &word);
  if (s.bad != 0) return;
  if (a.k_new != nullptr) {
    for (int t = 0; t < p.nnew; ++t) {
      const int pos = s.seqlen + t;
      int slot, row;
      page_split(p, pos, slot, row);
      const int pg = page_of(p, s, b, slot);  // checked above: in range
      T* kd = static_cast<T*>(const_cast<void*>(p.k_cache)) + pg * p.kc_page + row * p.kc_row + hk * p.kc_h;
      T* vd = static_cast<T*>(const_cast<void*>(p.v_cache)) + pg * p.vc_page + row * p.vc_row + hk * p.vc_h;
      const T* ks = static_cast<const T*>(a.k_new) + b * a.kn_b + t * a.kn_n + hk * a.kn_h;
      const T* vs = static_cast<const T*>(a.v_new) + b * a.vn_b + t * a.vn_n + hk * a.vn_h;
      rotate_copy<E>(kd, ks, rotary_key_position(s.seqlen, t), a);
      for (int e = threadIdx.x; e < p.d; e += blockDim.x) vd[e] = vs[e];
    }
  }
  if (a.q_rot != nullptr) {
    const T* q = static_cast<const T*>(p.q);
    T* qr = static_cast<T*>(a.q_rot);
    for (int i = 0; i < p.nq; ++i) {
      const std::int64_t pos = rotary_query_position(s.seqlen, i, p.rotary_q_per_row != 0);
      for (int g = 0; g < p.group; ++g) {
        const int h = hk * p.group + g;
        const T* src = q + b * p.q_b + i * p.q_n + h * p.q_h;
        T* dst = qr + ((static_cast<std::int64_t>(b) * p.nq + i) * p.hq + h) * p.d;
        rotate_copy<E>(dst, src, pos, a);
      }
    }
  }
}

}  // namespace flatattn::cuda
