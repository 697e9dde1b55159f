// Rotary position embedding (RoPE; Su et al., "RoFormer", 2021, Sec. 3.4), host and device: the one
// definition the CPU engine, the fp64 oracle and the CUDA decode kernels share (forward_kvcache,
// include/flatattn/kvcache.h).
//
// The first rotary_dim channels of a row x (head dim D >= rotary_dim) form rotary_dim / 2 pairs; pair c at
// position pos is rotated by the angle whose cosine and sine are cos[pos, c] and sin[pos, c]:
//   (x_a, x_b) <- (x_a cos - x_b sin, x_a sin + x_b cos)
// with (a, b) = (2c, 2c + 1) when interleaved (GPT-J) and (c, c + rotary_dim / 2) otherwise (GPT-NeoX,
// Llama in Hugging Face). Channels >= rotary_dim are unchanged.
#pragma once

#include <cstdint>

#include "src/core/mask.h"  // FLATATTN_HD

namespace flatattn {

/// The channels (a, b) of rotary pair c.
struct RotaryPair {
  std::int64_t a, b;
};

FLATATTN_HD RotaryPair rotary_pair(std::int64_t c, std::int64_t rotary_dim, bool interleaved) {
  return interleaved ? RotaryPair{2 * c, 2 * c + 1} : RotaryPair{c, c + rotary_dim / 2};
}

/// One rotated pair: returns x_a' (first) and x_b' (second) in T (float in the kernels, double in the oracle).
template <class T>
struct Rotated {
  T a, b;
};

template <class T>
FLATATTN_HD Rotated<T> rotate_pair(T xa, T xb, T cos, T sin) {
  return {xa * cos - xb * sin, xa * sin + xb * cos};
}

/// Rotates the first rotary_dim channels of row x (T values, contiguous) in place with the position's
/// tables cos_row[c], sin_row[c] (c < rotary_dim / 2), read through `load` (the tables' storage dtype).
template <class T, class Load>
FLATATTN_HD void rotate_row(T* x, std::int64_t rotary_dim, bool interleaved, const void* cos_row,
                            const void* sin_row, Load&& load) {
  for (std::int64_t c = 0; c < rotary_dim / 2; ++c) {
    const RotaryPair p = rotary_pair(c, rotary_dim, interleaved);
    const Rotated<T> r = rotate_pair<T>(x[p.a], x[p.b], load(cos_row, c), load(sin_row, c));
    x[p.a] = r.a;
    x[p.b] = r.b;
  }
}

/// The rotary position of new key t of a sequence with `cached` tokens: cached + t.
FLATATTN_HD std::int64_t rotary_key_position(std::int64_t cached, std::int64_t t) { return cached + t; }

/// The rotary position of query i (FlashAttention-2's rule): cached + i when the call is causal or has a
/// window (the queries are the new tokens), else cached for every query.
FLATATTN_HD std::int64_t rotary_query_position(std::int64_t cached, std::int64_t i, bool causal_or_window) {
  return causal_or_window ? cached + i : cached;
}

}  // namespace flatattn
