// The decode planner (forward_kvcache on CUDA): how many CTAs split the key range of one (sequence, kv head)
// so that a decode step fills the GPU. Decoding is bound by HBM bandwidth (the KV bytes), so the goal is one
// full wave of resident CTAs: B * Hkv * row_blocks CTAs without splits; when that is below the resident
// capacity (SMs x CTAs per SM), each gets floor(capacity / base) splits (floor: a second, nearly empty wave
// costs more than a few idle slots), each split keeping at least kMinTilesPerSplit key tiles so the
// combine's fp32 partials (8 * D bytes per row and split) stay small next to the KV bytes.
// The host knows the key count only as an upper bound: the cache capacity (cache_seqlens lives on the
// device and is not read: no synchronization, CUDA-graph capturable), narrowed by a left window.
#pragma once

#include <algorithm>
#include <cstdint>

#include "src/cuda/decode/decode_tile.h"

namespace flatattn::cuda {

struct DecodeWork {
  std::int64_t batch = 0, hkv = 0, row_blocks = 0;
  std::int64_t keys = 0;  ///< upper bound of the keys one row block reads
  int sm_count = 0;
  int ctas_per_sm = 1;    ///< resident decode CTAs per SM (shared memory and registers)
};

inline constexpr int kMinTilesPerSplit = 4;  ///< 256 keys
inline constexpr int kMaxSplits = 128;

/// The planner's split count (>= 1) for w. Inline (plain C++): the cost model's CLI and tests (src/model/decode.h,
/// tests/model/test_decode.cc) compare their picks with it in builds without CUDA.
inline int plan_decode_splits(const DecodeWork& w) {
  const std::int64_t base = std::max<std::int64_t>(1, w.batch * w.hkv * w.row_blocks);
  const std::int64_t capacity = static_cast<std::int64_t>(std::max(1, w.sm_count)) * std::max(1, w.ctas_per_sm);
  if (base >= capacity) return 1;
  const std::int64_t tiles = (w.keys + DecodeTile<64>::kBN - 1) / DecodeTile<64>::kBN;
  std::int64_t splits = capacity / base;
  splits = std::min<std::int64_t>(splits, std::max<std::int64_t>(1, tiles / kMinTilesPerSplit));
  return static_cast<int>(std::clamp<std::int64_t>(splits, 1, kMaxSplits));
}

}  // namespace flatattn::cuda
