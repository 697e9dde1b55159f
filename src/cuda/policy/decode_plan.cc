#include "src/cuda/policy/decode_plan.h"

#include <algorithm>

#include "src/cuda/decode/decode_tile.h"

namespace flatattn::cuda {

DecodePlan model_decode(const DecodeWork& w, int splits) {
  constexpr std::int64_t kBN = DecodeTile<64>::kBN;
  DecodePlan m;
  const std::int64_t base = std::max<std::int64_t>(1, w.batch * w.hkv * w.row_blocks);
  const std::int64_t capacity = static_cast<std::int64_t>(std::max(1, w.sm_count)) * std::max(1, w.ctas_per_sm);
  const std::int64_t tiles = std::max<std::int64_t>(1, (w.keys + kBN - 1) / kBN);
  // The kernel's split of the tiles: ceil(tiles / s) each, so fewer splits may carry tiles than asked.
  const std::int64_t per = (tiles + std::max(1, splits) - 1) / std::max(1, splits);
  const std::int64_t key_bytes = 2 * static_cast<std::int64_t>(w.d) * 2;  // K and V, 2 bytes each
  m.splits = std::max(1, splits);
  m.ctas = base * m.splits;
  m.waves = (m.ctas + capacity - 1) / capacity;
  m.kv_bytes = base * tiles * kBN * key_bytes;
  m.kv_bytes_per_cta = per * kBN * key_bytes;
  const std::int64_t rows = std::max(1, w.rows_per_block);
  m.partial_bytes = m.splits > 1 ? base * m.splits * rows * 4 * (w.d + 1) : 0;
  const std::int64_t concurrent = std::min(m.ctas, capacity);
  m.cta_gbs = std::min(kCtaGBs, w.hbm_gbs / static_cast<double>(concurrent));
  m.stream_us = static_cast<double>(m.waves) * static_cast<double>(m.kv_bytes_per_cta) / (m.cta_gbs * 1e3);
  m.fixed_us = kLaunchUs + static_cast<double>(m.waves) * kCtaLatencyUs;
  if (m.splits > 1) {
    const std::int64_t items = (rows * (w.d / 8) + 127) / 128;  // (row, 8-column) items per thread
    m.combine_us = kMemsetUs + kArriveUs + kL2RoundTripUs * (2.0 + static_cast<double>((m.splits + 7) / 8 * items));
  }
  m.predicted_us = m.fixed_us + m.stream_us + m.combine_us;
  return m;
}

DecodePlan plan_decode(const DecodeWork& w) {
  constexpr std::int64_t kBN = DecodeTile<64>::kBN;
  const std::int64_t tiles = (w.keys + kBN - 1) / kBN;
  // Candidates fit one wave: with base >= capacity the GPU is already full (splits only add partials), and
  // the model's whole-wave steps overstate a second wave's cost less than they understate its tail.
  const std::int64_t base = std::max<std::int64_t>(1, w.batch * w.hkv * w.row_blocks);
  const std::int64_t capacity = static_cast<std::int64_t>(std::max(1, w.sm_count)) * std::max(1, w.ctas_per_sm);
  const int top = static_cast<int>(
      std::clamp<std::int64_t>(std::min(tiles / kMinTilesPerSplit, capacity / base), 1, kMaxSplits));
  DecodePlan best = model_decode(w, 1);
  for (int s = 2; s <= top; ++s) {
    const DecodePlan m = model_decode(w, s);
    if (m.predicted_us < best.predicted_us) best = m;
  }
  for (int s = top; s > best.splits; --s) {  // the largest count within the tie margin: more bytes in flight
    const DecodePlan m = model_decode(w, s);
    if (m.predicted_us <= best.predicted_us * (1.0 + kTieFraction)) return m;
  }
  return best;
}

int plan_decode_splits(const DecodeWork& w) { return plan_decode(w).splits; }

}  // namespace flatattn::cuda
