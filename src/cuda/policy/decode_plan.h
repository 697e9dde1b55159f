// The decode planner (forward_kvcache on CUDA): how many CTAs split the key range of one (sequence, kv head)
// so that a decode step fills the GPU. Decoding is bound by HBM bandwidth (the KV bytes), so the goal is one
// full wave of resident CTAs: B * Hkv * row_blocks CTAs without splits; when that is below the resident
// capacity (SMs x CTAs per SM), each gets floor(capacity / base) splits (floor: a second, nearly empty wave
// costs more than a few idle slots), each split keeping at least kMinTilesPerSplit key tiles so the
// combine's fp32 partials (8 * D bytes per row and split) stay small next to the KV bytes.
// The host knows the key count only as an upper bound: the cache capacity (cache_seqlens lives on the
// device and is not read: no synchronization, CUDA-graph capturable), narrowed by a left window.
#pragma once

#include <cstdint>

namespace flatattn::cuda {

struct DecodeWork {
  std::int64_t batch = 0, hkv = 0, row_blocks = 0;
  std::int64_t keys = 0;  ///< upper bound of the keys one row block reads
  int sm_count = 0;
  int ctas_per_sm = 1;    ///< resident decode CTAs per SM (shared memory and registers)
};

inline constexpr int kMinTilesPerSplit = 4;  ///< 256 keys
inline constexpr int kMaxSplits = 128;

/// The planner's split count (>= 1) for w.
int plan_decode_splits(const DecodeWork& w);

}  // namespace flatattn::cuda
