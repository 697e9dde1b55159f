#include "src/model/decode.h"

#include <algorithm>
#include <string>

#include "flatattn/error.h"
#include "src/cuda/decode/decode_tile.h"  // plain C++: the kernel's shared memory and resident CTAs

namespace flatattn::model {

namespace {

void check(bool ok, const char* field, std::int64_t value, const std::string& limit, const std::string& fix) {
  if (!ok) throw Error(Error::Kind::invalid_argument, field, std::to_string(value), limit, fix);
}

}  // namespace

void DecodeShape::validate() const {
  check(batch >= 1, "batch", batch, "must be >= 1", "give at least one sequence");
  check(hkv >= 1, "hkv", hkv, "must be >= 1", "give at least one key/value head");
  check(hq >= 1 && hq % hkv == 0, "hq", hq, "must be a positive multiple of hkv = " + std::to_string(hkv),
        "use Hq = group x Hkv (GQA/MQA)");
  check(q_len >= 1, "q_len", q_len, "must be >= 1", "give at least one new query row");
  check(context >= 1, "context", context, "must be >= 1", "give the keys each sequence attends to");
  check(page >= 0, "page", page, "must be >= 0 (0: a contiguous cache)", "give the page size in keys");
  check(d == 64 || d == 128 || d == 256, "d", d, "the decode kernels exist for D = 64, 128, 256",
        "use one of the built head dims");
  if (dtype != DType::f16 && dtype != DType::bf16)
    throw Error(Error::Kind::unsupported, "dtype", std::string(name(dtype)), "the decode kernels run f16 and bf16",
                "use bf16 or f16");
}

int decode_smem_bytes(std::int64_t d) { return cuda::decode_smem_bytes(int(d)); }

int decode_resident_ctas_per_sm(std::int64_t d, const Gpu& gpu) { return cuda::decode_ctas_per_sm(int(d), gpu.smem_per_cta); }

DecodePrediction predict_decode(const DecodeShape& s, int splits, const Gpu& gpu) {
  s.validate();
  if (splits < 1)
    throw Error(Error::Kind::invalid_argument, "splits", std::to_string(splits), "must be >= 1", "give 1 .. 128");
  if (!gpu.has_decode)
    throw Error(Error::Kind::unsupported, "hardware", "a GPU file without \"decode\"",
                "the decode model needs the GPU's fitted decode constants",
                "use a GPU with them (h100) or fit them: flatattn model decode --measured FILE --fit");
  const DecodeCalib& c = gpu.decode;
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

int model_decode_splits(const DecodeShape& s, const Gpu& gpu, int max_splits) {
  int best = 1;
  double best_us = predict_decode(s, 1, gpu).step_us;
  for (int k = 2; k <= max_splits; ++k) {
    const double us = predict_decode(s, k, gpu).step_us;
    if (us < best_us) best = k, best_us = us;
  }
  return best;
}

}  // namespace flatattn::model
