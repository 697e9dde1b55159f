// The decode step's time: our CUDA forward_kvcache (docs/decode.md) at a given split count, on one GPU.
//
// The kernel (src/cuda/decode): one CTA of 128 threads per (row block, split, sequence x kv head). A row block packs
// 16 rows of the GQA group x q_len (rows = Hq/Hkv * q_len, row blocks = ceil(rows / 16)); every row block reads the
// whole key range of its split, in 64-key tiles, through a kStages-deep cp.async pipeline. With splits > 1 a combine
// kernel merges the splits' fp32 partials. The terms, each with its unit and where it comes from:
//
//   tiles      = ceil(context / 64)                      key tiles of one (sequence, kv head)
//   per_split  = ceil(tiles / splits)                    tiles one CTA reads (the kernel's own division), and
//   splits'    = ceil(tiles / per_split)                 the splits that get any tile (the rest exit at once)
//   CTAs       = B * Hkv * row_blocks * splits'
//   slots      = SMs * resident CTAs per SM              (shared memory: decode_resident_ctas_per_sm; 2 at D = 128
//                                                         on an H100, the runtime's own count)
//   waves      = ceil(CTAs / slots)
//   KV bytes   = B * Hkv * context * D * 2 (K and V) * 2 (bytes per element): what the step must read from DRAM;
//                row blocks > 1 re-read it through L2 and are not charged again
//   wave time  = wave_us + max(per_split * tile_us(page),      one CTA's latency-bound walk over its tiles, and
//                              KV bytes / waves / stream_gbps) the wave's share of the bytes at the GPU's read rate
//   kernel     = start_us + waves * wave time
//   combine    = splits' > 1 ? combine_us + combine_split_us * splits' + partial bytes / stream_gbps : 0, where
//                partial bytes = 2 (written, read) * splits' * B * Hq * q_len * (D + 1) * 4 (fp32 O and LSE)
//   step       = kernel + combine                                                    (microseconds)
//
// tile_us(page) is tile_us_row_pages when the page size is not a multiple of 64 (each row looks up its page: one
// more dependent load per tile) and tile_us_tile_pages otherwise (page = 0: a contiguous cache); both scale with
// D / 128 (a tile's bytes). The constants (hardware.h DecodeCalib) are fitted to bench_decode times
// (decode_compare.h fit_decode); the fit's data and errors are in the hardware file's notes and in
// bench/results/decode-model-h100-2026-12-07.md. The model ignores masks (windows, causal q_len > 1 bands), varlen,
// the append + rotary of new rows and cluster decoding: a step of those is predicted as the plain one over `context` keys.
#pragma once

#include <cstdint>

#include "flatattn/dtype.h"
#include "src/model/hardware.h"

namespace flatattn::model {

/// One decode step's shape. Throws Error (validate) naming the field when it is out of range.
struct DecodeShape {
  std::int64_t batch = 1;     ///< B, sequences
  std::int64_t hq = 32;       ///< query heads
  std::int64_t hkv = 8;       ///< key/value heads (divides hq)
  std::int64_t q_len = 1;     ///< new query rows per sequence (1: decoding; > 1: speculative, chunked prefill)
  std::int64_t context = 8192;  ///< keys each sequence attends to (the cache capacity the runtime plans for)
  std::int64_t page = 16;     ///< page size in keys; 0 = a contiguous cache (one lookup per tile)
  std::int64_t d = 128;       ///< head dim: 64, 128 or 256 (the built decode instances)
  DType dtype = DType::bf16;  ///< f16 or bf16

  /// Throws Error(invalid_argument) naming the field, its value and the allowed range.
  void validate() const;
  [[nodiscard]] std::int64_t group() const { return hq / hkv; }
  /// 16-row blocks of the packed GQA group x q_len.
  [[nodiscard]] std::int64_t row_blocks() const { return (group() * q_len + 15) / 16; }
  /// 64-key tiles of one (sequence, kv head).
  [[nodiscard]] std::int64_t tiles() const { return (context + 63) / 64; }
  /// K and V bytes the step reads (each once).
  [[nodiscard]] double kv_bytes() const { return double(batch) * hkv * context * d * 2 * 2; }
  /// Whether each row looks up its page (a page size that is not a multiple of the 64-key tile).
  [[nodiscard]] bool row_pages() const { return page > 0 && page % 64 != 0; }
};

/// One prediction; every time in microseconds.
struct DecodePrediction {
  int splits = 1;               ///< splits that get at least one tile (<= the requested count)
  std::int64_t tiles_per_split = 0;
  std::int64_t ctas = 0, slots = 0, waves = 0;
  double kv_bytes = 0, partial_bytes = 0;
  double latency_us = 0;        ///< one wave's latency-bound walk (per_split x tile_us)
  double stream_us = 0;         ///< one wave's share of the bytes at stream_gbps
  double kernel_us = 0, combine_us = 0, step_us = 0;
  [[nodiscard]] bool bandwidth_bound() const { return stream_us >= latency_us; }
  /// KV bytes over the step's time (GB/s).
  [[nodiscard]] double gbps() const { return kv_bytes / (step_us * 1e3); }
};

/// Resident decode CTAs per SM on gpu: src/cuda/decode/decode_tile.h decode_ctas_per_sm with the GPU's opt-in shared
/// memory per CTA, the runtime planner's own count.
int decode_resident_ctas_per_sm(std::int64_t d, const Gpu& gpu);

/// The decode kernel's shared memory per CTA in bytes at head dim d (src/cuda/decode/decode_tile.h).
int decode_smem_bytes(std::int64_t d);

/// The step time of `shape` with `splits` (>= 1) split-KV CTAs per (row block, sequence, kv head) on `gpu`.
/// Throws Error when the shape is invalid, splits < 1, or the GPU file has no "decode" calibration.
DecodePrediction predict_decode(const DecodeShape& shape, int splits, const Gpu& gpu);

/// The model's split count: the argmin of predict_decode over 1..max_splits (ties to the fewer splits).
int model_decode_splits(const DecodeShape& shape, const Gpu& gpu, int max_splits = 128);

}  // namespace flatattn::model
