#include "src/cuda/policy/decode_plan.h"

#include <algorithm>

#include "src/cuda/decode/decode_tile.h"

namespace flatattn::cuda {

int plan_decode_splits(const DecodeWork& w) {
  const std::int64_t base = std::max<std::int64_t>(1, w.batch * w.hkv * w.row_blocks);
  const std::int64_t capacity = static_cast<std::int64_t>(std::max(1, w.sm_count)) * std::max(1, w.ctas_per_sm);
  if (base >= capacity) return 1;
  const std::int64_t tiles = (w.keys + DecodeTile<64>::kBN - 1) / DecodeTile<64>::kBN;
  std::int64_t splits = capacity / base;
  splits = std::min<std::int64_t>(splits, std::max<std::int64_t>(1, tiles / kMinTilesPerSplit));
  return static_cast<int>(std::clamp<std::int64_t>(splits, 1, kMaxSplits));
}

}  // namespace flatattn::cuda
