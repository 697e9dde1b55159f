#include "src/model/decode.h"

#include <algorithm>
#include <string>

#include "flatattn/error.h"
#include "src/cuda/decode/decode_tile.h"  // plain C++: the kernel's shared memory and resident CTAs

namespace flatattn::model {

namespace {

[[noreturn]] void refuse(const char* field, std::int64_t value, std::string limit, const char* fix) {
  throw Error(Error::Kind::invalid_argument, field, std::to_string(value), std::move(limit), fix);
}

}  // namespace

void DecodeShape::validate() const {
  if (batch < 1) refuse("batch", batch, "must be >= 1", "give at least one sequence");
  if (hkv < 1) refuse("hkv", hkv, "must be >= 1", "give at least one key/value head");
  if (hq < 1 || hq % hkv != 0)
    refuse("hq", hq, "must be a positive multiple of hkv = " + std::to_string(hkv), "use Hq = group x Hkv (GQA/MQA)");
  if (q_len < 1) refuse("q_len", q_len, "must be >= 1", "give at least one new query row");
  if (context < 1) refuse("context", context, "must be >= 1", "give the keys each sequence attends to");
  if (page < 0) refuse("page", page, "must be >= 0 (0: a contiguous cache)", "give the page size in keys");
  if (d != 64 && d != 128 && d != 256)
    refuse("d", d, "the decode kernels exist for D = 64, 128, 256", "use one of the built head dims");
  if (dtype != DType::f16 && dtype != DType::bf16)
    throw Error(Error::Kind::unsupported, "dtype", std::string(name(dtype)), "the decode kernels run f16 and bf16",
                "use bf16 or f16");
}

int decode_smem_bytes(std::int64_t d) { return cuda::decode_smem_bytes(int(d)); }

int decode_resident_ctas_per_sm(std::int64_t d, const Gpu& gpu) { return cuda::decode_ctas_per_sm(int(d), gpu.smem_per_cta); }

namespace {

const DecodeCalib& calib_of(const Gpu& gpu) {
  if (!gpu.decode)
    throw Error(Error::Kind::unsupported, "hardware", "a GPU file without \"decode\"",
                "the decode model needs the GPU's fitted decode constants",
                "use a GPU with them (h100) or fit them: flatattn model decode --measured FILE --fit");
  return *gpu.decode;
}

/// predict_decode's arithmetic for a validated shape, splits >= 1 and the GPU's constants c (model_decode_splits
/// runs it for every split count without validating again).
DecodePrediction predict(const DecodeShape& s, int splits, const Gpu& gpu, const DecodeCalib& c) {
  DecodePrediction p;
  const std::int64_t tiles = s.tiles();
  p.tiles_per_split = (tiles + splits - 1) / splits;
  p.splits = int((tiles + p.tiles_per_split - 1) / p.tiles_per_split);
  p.ctas = s.batch * s.hkv * s.row_blocks() * p.splits;
  p.slots = std::int64_t(gpu.sms) * decode_resident_ctas_per_sm(s.d, gpu);
  p.waves = (p.ctas + p.slots - 1) / p.slots;
  p.kv_bytes = s.kv_bytes();
  const double tile_us = (s.row_pages() ? c.tile_us_row_pages : c.tile_us_tile_pages) * double(s.d) / 128.0;
  p.latency_us = double(p.tiles_per_split) * tile_us;
  p.stream_us = p.kv_bytes / double(p.waves) / (c.stream_gbps * 1e3);
  p.kernel_us = c.start_us + double(p.waves) * (c.wave_us + std::max(p.latency_us, p.stream_us));
  if (p.splits > 1) {
    p.partial_bytes = 2.0 * p.splits * double(s.batch) * s.hq * s.q_len * double(s.d + 1) * 4;
    p.combine_us = c.combine_us + c.combine_split_us * p.splits + p.partial_bytes / (c.stream_gbps * 1e3);
  }
  p.step_us = p.kernel_us + p.combine_us;
  return p;
}

}  // namespace

DecodePrediction predict_decode(const DecodeShape& s, int splits, const Gpu& gpu) {
  s.validate();
  if (splits < 1) refuse("splits", splits, "must be >= 1", "give 1 .. 128");
  return predict(s, splits, gpu, calib_of(gpu));
}

int model_decode_splits(const DecodeShape& s, const Gpu& gpu, int max_splits) {
  s.validate();
  const DecodeCalib& c = calib_of(gpu);
  int best = 1;
  double best_us = predict(s, 1, gpu, c).step_us;
  for (int k = 2; k <= max_splits; ++k) {
    const double us = predict(s, k, gpu, c).step_us;
    if (us < best_us) best = k, best_us = us;
  }
  return best;
}

}  // namespace flatattn::model
