// The append step of forward_kvcache (include/flatattn/kvcache.h, semantics 1 and 3), fused into the decode
// kernel (one launch per decode step): new key/value token t of sequence b is cache position
// cache_seqlens[b] + t, the keys rotated (RoPE, src/core/rotary.h: fp32 math, one rounding to the storage
// dtype) when rotary is on, and the queries rotated at their positions. In the kernel:
//  - every CTA reads the new rows it needs from k_new/v_new, never from the cache, so no CTA depends on
//    another's cache writes (no ordering between CTAs is needed): V rows and unrotated K rows by cp.async
//    like cache rows, rotated K rows element by element (stage_rotated_element) after the tile's copies;
//  - the CTA of row block 0 and split 0 of each (sequence, kv head) writes the new rows into the cache
//    pages (write_fresh_rows), after checking the sequence's whole block-table row (kv_meta.cuh check_seq
//    with one part): a refused sequence writes nothing, as before;
//  - each CTA rotates its own query rows while staging them in shared memory (the same values the former
//    append kernel wrote to a rotated copy in the workspace).
#pragma once

#include <cstdint>

#include "src/core/rotary.h"
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

/// Elements c .. c + 7 (c a multiple of 8) of row `src` (D elements, 16-byte aligned) rotated at position
/// pos (the pairs of p.rotary_dim, rotary_pair's layouts: channel e pairs with e ^ 1 (interleaved) or with
/// e +- rotary_dim / 2 (half-split), cosine index e / 2 or e mod rotary_dim / 2; the channels past it
/// copied), or copied when `rotate` is false. 32-bit indices from a few base pointers: this runs inside
/// the decode kernel's key loop, where registers are scarce.
template <class E>
FLATATTN_DEVICE uint4 fresh_chunk(const DecodeParams& p, const typename E::T* src, int c, std::int64_t pos,
                                  bool rotate) {
  using T = typename E::T;
  uint4 raw = *reinterpret_cast<const uint4*>(src + c);
  const int rd = rotate ? p.rotary_dim : 0;
  if (c >= rd) return raw;
  const T* x = reinterpret_cast<const T*>(&raw);
  const T* cs = static_cast<const T*>(p.rotary_cos) + pos * p.rot_stride;
  const T* sn = static_cast<const T*>(p.rotary_sin) + pos * p.rot_stride;
  const int half = rd / 2;
  const bool il = p.interleaved != 0;
  uint4 res = raw;
  T* out = reinterpret_cast<T*>(&res);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const int e = c + k;
    if (e < rd) {
      const bool first = il ? (e & 1) == 0 : e < half;       // channel e is the pair's a (else its b)
      const int idx = il ? e >> 1 : (first ? e : e - half);  // the pair's cos/sin index
      const float xe = to_float<E>(x[k]);
      const float xp = il ? to_float<E>(x[k ^ 1]) : to_float<E>(src[first ? e + half : e - half]);
      const float co = to_float<E>(cs[idx]), si = to_float<E>(sn[idx]);
      const Rotated<float> r = first ? rotate_pair<float>(xe, xp, co, si) : rotate_pair<float>(xp, xe, co, si);
      out[k] = from_float<E>(first ? r.a : r.b);
    }
  }
  return res;
}

/// Element e of new key row `src` rotated at position pos, into the shared address `addr` (2 bytes): the key
/// loop's path for a tile holding new rows with rotary on, one element at a time so that it adds few
/// registers to the loop's (the same math as fresh_chunk).
template <class E>
FLATATTN_DEVICE void stage_rotated_element(const DecodeParams& p, const typename E::T* src, int e, std::int64_t pos,
                                           std::uint32_t addr) {
  using T = typename E::T;
  T v = src[e];
  const int rd = p.rotary_dim, half = rd / 2;
  if (e < rd) {
    const bool il = p.interleaved != 0;
    const bool first = il ? (e & 1) == 0 : e < half;
    const int idx = il ? e >> 1 : (first ? e : e - half);
    const int partner = il ? e ^ 1 : (first ? e + half : e - half);
    const float xe = to_float<E>(v), xp = to_float<E>(src[partner]);
    const float co = to_float<E>(static_cast<const T*>(p.rotary_cos)[pos * p.rot_stride + idx]);
    const float si = to_float<E>(static_cast<const T*>(p.rotary_sin)[pos * p.rot_stride + idx]);
    const Rotated<float> r = first ? rotate_pair<float>(xe, xp, co, si) : rotate_pair<float>(xp, xe, co, si);
    v = from_float<E>(first ? r.a : r.b);
  }
  const unsigned short bits = *reinterpret_cast<const unsigned short*>(&v);
  asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(addr), "h"(bits));
}

/// The new K (rotated) or V row of token t, 8 elements from column c.
template <class E>
FLATATTN_DEVICE uint4 fresh_kv_chunk(const DecodeParams& p, const KvSeq& s, int b, int hk, int t, int c, bool key) {
  using T = typename E::T;
  const T* src = key ? static_cast<const T*>(p.k_new) + b * p.kn_b + t * p.kn_n + hk * p.kn_h
                     : static_cast<const T*>(p.v_new) + b * p.vn_b + t * p.vn_n + hk * p.vn_h;
  return fresh_chunk<E>(p, src, c, rotary_key_position(s.seqlen, t), key && p.rotary_dim > 0);
}

/// Writes the Nnew new rows of kv head hk of sequence b (checked whole: s.bad == 0) into the cache: the
/// CTA's threads share the (token, 8-column chunk) items.
template <class E, int D>
FLATATTN_DEVICE void write_fresh_rows(const DecodeParams& p, const KvSeq& s, int b, int hk) {
  using T = typename E::T;
  constexpr int kDT = D / 8;
  for (int idx = threadIdx.x; idx < p.nnew * kDT; idx += blockDim.x) {
    const int t = idx / kDT, c = (idx - t * kDT) * 8;
    int slot, row;
    page_split(p, s.seqlen + t, slot, row);
    const int pg = page_of(p, s, b, slot);  // checked: in range
    T* kd = static_cast<T*>(const_cast<void*>(p.k_cache)) + pg * p.kc_page + row * p.kc_row + hk * p.kc_h + c;
    T* vd = static_cast<T*>(const_cast<void*>(p.v_cache)) + pg * p.vc_page + row * p.vc_row + hk * p.vc_h + c;
    *reinterpret_cast<uint4*>(kd) = fresh_kv_chunk<E>(p, s, b, hk, t, c, true);
    *reinterpret_cast<uint4*>(vd) = fresh_kv_chunk<E>(p, s, b, hk, t, c, false);
  }
}

}  // namespace flatattn::cuda
