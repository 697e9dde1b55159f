// The append step of forward_kvcache (include/flatattn/kvcache.h, semantics 1 and 3): new key/value token t
// of sequence b is written to cache position cache_seqlens[b] + t, the keys rotated (RoPE) when rotary is on;
// the queries are rotated into a contiguous copy (B, Nq, Hq, D) in the call's workspace that the decode
// kernel then reads. One CTA per (kv head, sequence); it checks the sequence first (kv_meta.cuh) and writes
// nothing for a refused one, so no metadata value makes it write outside the cache. Stream-ordered, no
// host synchronization: capturable in a CUDA graph.
#pragma once

#include <cstdint>

#include "src/cuda/common/dtype.cuh"
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

/// Element e of row x (D contiguous elements) after the rotary embedding at position pos (RoFormer, Su et al.
/// 2021, Sec. 3.4): channels e < rotary_dim form pairs (2c, 2c+1) (interleaved, GPT-J) or (c, c + rotary_dim/2)
/// (GPT-NeoX); the pair (x0, x1) becomes (x0 cos - x1 sin, x0 sin + x1 cos) with cos/sin[pos, c], in fp32.
template <class E>
FLATATTN_DEVICE float rotated(const typename E::T* x, int e, int pos, const AppendParams& a) {
  const float xe = to_float<E>(x[e]);
  const int rd = a.kv.rotary_dim;
  if (a.rotary_cos == nullptr || e >= rd) return xe;
  const int half = rd / 2;
  int c, partner;
  bool first;
  if (a.interleaved) {
    c = e >> 1, first = (e & 1) == 0, partner = e ^ 1;
  } else {
    first = e < half, c = first ? e : e - half, partner = first ? e + half : e - half;
  }
  using T = typename E::T;
  const std::int64_t at = static_cast<std::int64_t>(pos) * a.rot_stride + c;
  const float cs = to_float<E>(static_cast<const T*>(a.rotary_cos)[at]);
  const float sn = to_float<E>(static_cast<const T*>(a.rotary_sin)[at]);
  const float xp = to_float<E>(x[partner]);
  return first ? xe * cs - xp * sn : xp * sn + xe * cs;
}

template <class E>
__global__ void __launch_bounds__(128) kv_append_kernel(const AppendParams a) {
  using T = typename E::T;
  __shared__ unsigned word;
  const DecodeParams& p = a.kv;
  const int hk = blockIdx.x, b = blockIdx.y;
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
      for (int e = threadIdx.x; e < p.d; e += blockDim.x) {
        kd[e] = from_float<E>(rotated<E>(ks, e, pos, a));
        vd[e] = vs[e];
      }
    }
  }
  if (a.q_rot != nullptr) {
    const T* q = static_cast<const T*>(p.q);
    T* qr = static_cast<T*>(a.q_rot);
    for (int i = 0; i < p.nq; ++i) {
      const int pos = s.seqlen + (p.rotary_q_per_row ? i : 0);
      for (int g = 0; g < p.group; ++g) {
        const int h = hk * p.group + g;
        const T* src = q + b * p.q_b + i * p.q_n + h * p.q_h;
        T* dst = qr + ((static_cast<std::int64_t>(b) * p.nq + i) * p.hq + h) * p.d;
        for (int e = threadIdx.x; e < p.d; e += blockDim.x) dst[e] = from_float<E>(rotated<E>(src, e, pos, a));
      }
    }
  }
}

}  // namespace flatattn::cuda
