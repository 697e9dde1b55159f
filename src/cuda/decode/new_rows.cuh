// The call's new rows inside the decode kernel (kvcache.h semantics 1 and 3; FlashAttention-2's
// flash_attn_with_kvcache fuses them the same way): new key/value token t of sequence b belongs at cache
// position cache_seqlens[b] + t, its key rotated (RoPE, src/core/rotary.h) when rotary is on, and the queries
// are rotated at their positions. No separate append kernel and no rotated copy of q in memory:
// - every CTA rotates its own Q rows while they sit in shared memory (rope_q_rows);
// - a CTA whose key tile reaches the new positions builds those rows in shared memory from k_new/v_new
//   (fill_new_rows) instead of reading them from the cache: the cache rows may not be written yet;
// - one CTA per (sequence, kv head), the writer (row block 0, split 0), stores the rows into the cache
//   (write_new_rows) after checking the sequence's whole block table, so a refused sequence writes nothing.
// The rotation is the one definition of rotary.h in fp32 with one rounding to the storage dtype, so the rows
// a CTA attends to are bit for bit the rows the writer stores. A new position of sequence b must not be a
// cache row another sequence of the same call reads (shared pages are never appended to).
#pragma once

#include <cstdint>

#include "src/core/rotary.h"
#include "src/cuda/common/dtype.cuh"
#include "src/cuda/decode/decode_params.h"
#include "src/cuda/decode/kv_meta.cuh"

namespace flatattn::cuda {

/// The items of one row: the rotary pairs, then (with `rest`) the channels past rotary_dim, copied.
FLATATTN_DEVICE int rope_items(const DecodeParams& p, bool rest) {
  const int rd = p.rotary_cos != nullptr ? p.rotary_dim : 0;
  return rd / 2 + (rest ? p.d - rd : 0);
}

/// Item `item` (< rope_items) of a row at rotary position pos: get(e) reads channel e of the source row,
/// put(e, x) writes channel e of the destination (both typename E::T; the same row for an in-place rotation).
template <class E, class Get, class Put>
FLATATTN_DEVICE void rope_item(const DecodeParams& p, std::int64_t pos, int item, Get&& get, Put&& put) {
  using T = typename E::T;
  const int rd = p.rotary_cos != nullptr ? p.rotary_dim : 0, half = rd / 2;
  if (item < half) {
    const RotaryPair pr = rotary_pair(item, rd, p.interleaved != 0);
    const T c = static_cast<const T*>(p.rotary_cos)[pos * p.rot_stride + item];
    const T s = static_cast<const T*>(p.rotary_sin)[pos * p.rot_stride + item];
    const float xa = E::to_float(get(static_cast<int>(pr.a))), xb = E::to_float(get(static_cast<int>(pr.b)));
    const Rotated<float> r = rotate_pair<float>(xa, xb, E::to_float(c), E::to_float(s));
    put(static_cast<int>(pr.a), E::from_float(r.a));
    put(static_cast<int>(pr.b), E::from_float(r.b));
  } else {
    const int e = rd + (item - half);
    put(e, get(e));
  }
}

/// Rotates in place the CTA's Q rows [0, n) staged in shared tile q_tile (TQ layout); row r is query i(r) of
/// sequence s. Call between the staging's __syncthreads and the fragment loads (with a __syncthreads after).
template <class E, class TQ, class RowQuery>
FLATATTN_DEVICE void rope_q_rows(const DecodeParams& p, const KvSeq& s, unsigned char* q_tile, int n,
                                 RowQuery&& query_of) {
  using T = typename E::T;
  const int per = rope_items(p, false);
  for (int idx = threadIdx.x; idx < n * per; idx += blockDim.x) {
    const int r = idx / per;
    const std::int64_t pos = rotary_query_position(s.seqlen, query_of(r), p.rotary_q_per_row != 0);
    auto at = [&](int e) { return reinterpret_cast<T*>(q_tile + TQ::elem_offset(r, e)); };
    rope_item<E>(p, pos, idx - r * per, [&](int e) { return *at(e); }, [&](int e, T x) { *at(e) = x; });
  }
}

/// Writes the new key (rotated) and value rows of new tokens t in [t_lo, t_hi) of sequence b, kv head hk, into
/// shared tiles sk/sv (Tile layout) at rows pos - t0 (pos = cache_seqlens[b] + t). The cp.async copies of the
/// tile must have landed (they zero-filled these rows); a __syncthreads must follow before the rows are read.
template <class E, class Tile>
FLATATTN_DEVICE void fill_new_rows(const DecodeParams& p, const KvSeq& s, int b, int hk, int t0, int t_lo, int t_hi,
                                   unsigned char* sk, unsigned char* sv) {
  using T = typename E::T;
  const int per_k = rope_items(p, true), per = per_k + p.d;
  for (int idx = threadIdx.x; idx < (t_hi - t_lo) * per; idx += blockDim.x) {
    const int t = t_lo + idx / per, item = idx % per, r = s.seqlen + t - t0;
    if (item < per_k) {
      const T* src = static_cast<const T*>(p.k_new) + b * p.kn_b + t * p.kn_n + hk * p.kn_h;
      rope_item<E>(p, rotary_key_position(s.seqlen, t), item, [&](int e) { return src[e]; },
                   [&](int e, T x) { *reinterpret_cast<T*>(sk + Tile::elem_offset(r, e)) = x; });
    } else {
      const int e = item - per_k;
      *reinterpret_cast<T*>(sv + Tile::elem_offset(r, e)) =
          static_cast<const T*>(p.v_new)[b * p.vn_b + t * p.vn_n + hk * p.vn_h + e];
    }
  }
}

/// The writer's append: new tokens [0, nnew) of sequence b (checked whole: s.bad == 0), kv head hk, into the
/// cache at positions cache_seqlens[b] + t, keys rotated.
template <class E>
FLATATTN_DEVICE void write_new_rows(const DecodeParams& p, const KvSeq& s, int b, int hk) {
  using T = typename E::T;
  const int per_k = rope_items(p, true), per = per_k + p.d;
  for (int idx = threadIdx.x; idx < p.nnew * per; idx += blockDim.x) {
    const int t = idx / per, item = idx % per;
    int slot, row;
    page_split(p, s.seqlen + t, slot, row);
    const int pg = page_of(p, s, b, slot);  // checked: in range
    if (item < per_k) {
      const T* src = static_cast<const T*>(p.k_new) + b * p.kn_b + t * p.kn_n + hk * p.kn_h;
      T* dst = static_cast<T*>(const_cast<void*>(p.k_cache)) + pg * p.kc_page + row * p.kc_row + hk * p.kc_h;
      rope_item<E>(p, rotary_key_position(s.seqlen, t), item, [&](int e) { return src[e]; },
                   [&](int e, T x) { dst[e] = x; });
    } else {
      const int e = item - per_k;
      T* dst = static_cast<T*>(const_cast<void*>(p.v_cache)) + pg * p.vc_page + row * p.vc_row + hk * p.vc_h;
      dst[e] = static_cast<const T*>(p.v_new)[b * p.vn_b + t * p.vn_n + hk * p.vn_h + e];
    }
  }
}

}  // namespace flatattn::cuda
