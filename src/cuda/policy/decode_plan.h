// The decode planner (forward_kvcache on CUDA): how many CTAs split the key range of one (sequence, kv head)
// so that a decode step is as short as it can be, from a cost model whose every term is a named field of
// DecodePlan, so that its prediction can be checked against bench/gpu/bench_decode's measurement.
//
// Decoding is bound by HBM bandwidth (the KV bytes): B * Hkv * row_blocks CTAs without splits; split s of
// them takes 1/s of the key tiles. The model of one step with s splits (one launch: the combine is fused,
// src/cuda/decode/split_combine.cuh):
//   ctas = base * s, waves = ceil(ctas / capacity), capacity = SMs x resident CTAs per SM,
//   rate per CTA = min(kCtaGBs, hbm_gbs / min(ctas, capacity))  (its pipeline's own limit, or its share of HBM),
//   stream_us = waves * kv_bytes_per_cta / rate,  fixed_us = kLaunchUs + waves * kCtaLatencyUs,
//   combine_us (s > 1) = kMemsetUs + kArriveUs + kL2RoundTripUs * (2 + ceil(s / 8) * items per thread),
//   predicted_us = fixed_us + stream_us + combine_us.
// The planner takes the largest s whose prediction is within kTieFraction of the best (a hedge: more bytes
// in flight where the model cannot tell; kCtaGBs is its least certain constant),
// s in [1, min(kMaxSplits, key tiles / kMinTilesPerSplit, capacity / base)] (one wave; none when base
// fills it already). Filling a wave (2 CTAs per SM at D = 128) wins whenever one CTA per SM cannot stream
// at its HBM share (kCtaGBs * SMs < hbm_gbs); a second, partial wave costs a whole CTA latency and the
// stream time of a full wave, so it loses to a few idle slots.
// The host knows the key count only as an upper bound: the cache capacity (cache_seqlens lives on the
// device and is not read: no synchronization, CUDA-graph capturable), narrowed by a left window.
//
// Constants: H100 SXM (132 SMs, HBM3), calibrated on bench/results/decode-h100-498d7dd.json (the two-launch
// path): kCtaGBs from the forced 1-split rows (B = 1, 8 CTAs of 4 MB each: 170 us, 24.7 GB/s per CTA alone)
// and the loaded rows (B = 1, 32/32, cluster 4: 128 CTAs at ~17 GB/s each; B = 8, 32/32: 256 CTAs at 9.8, their
// HBM share): 15 under load, so one CTA per SM (132 x 15 = 2.0 TB/s) cannot fill HBM and a wave of 2 per SM
// wins; kLaunchUs + kCtaLatencyUs from the intercepts (~2-8 us of the 1-split rows, ~12 us of the cluster
// rows); the others are estimates (an L2 round trip under load, the memset node). hbm_gbs: the issue's
// measured copy bandwidth, 3.0 TB/s (an H200 has ~4.8: not told apart yet, DeviceInfo has no bandwidth).
// Checked against the old measurement where the combine did not matter: B = 64, 32/32, 8k: 2988 predicted,
// 2849 measured; B = 64, 32/8, 32k: 2964 vs 2808; B = 8, 32/32, 8k (no split): 365 vs 428.
//
// Predictions (H100: sm_count 132, 2 CTAs per SM at D = 128, hbm_gbs 3000; bf16, keys = context, page size
// not modelled), for the coordinator to check against bench_decode's planner rows (time = its ms column,
// GB/s = kv_bytes / time; this table is printed by the KvDecodePlan.PredictionsTable test):
//  B  ctx     Hq/Hkv q  splits  ctas  waves kv_bytes_per_cta  cta_gbs  stream_us  fixed_us  combine_us  predicted_us  GB/s
//  1   8192    32/32 1       8   256     1           524288     11.7       44.7       7.0         3.7          55.4   2421
//  1  32768    32/32 1       8   256     1          2097152     11.7      179.0       7.0         3.7         189.7   2831
//  8   8192    32/32 1       1   256     1          4194304     11.7      357.9       7.0         0.0         364.9   2942
//  8  32768    32/32 1       1   256     1         16777216     11.7     1431.7       7.0         0.0        1438.7   2985
// 64   8192    32/32 1       1  2048     8          4194304     11.4     2952.8      35.0         0.0        2987.8   2875
//  1   8192    32/8  1      32   256     1           131072     11.7       11.2       7.0         4.9          23.1   1454
//  1  32768    32/8  1      32   256     1           524288     11.7       44.7       7.0         4.9          56.6   2370
//  8   8192    32/8  1       4   256     1          1048576     11.7       89.5       7.0         3.7         100.2   2680
//  8  32768    32/8  1       4   256     1          4194304     11.7      357.9       7.0         3.7         368.6   2913
// 64   8192    32/8  1       1   512     2          4194304     11.4      738.2      11.0         0.0         749.2   2866
// 64  32768    32/8  1       1   512     2         16777216     11.4     2952.8      11.0         0.0        2963.8   2898
//  1   8192    64/8  1      32   256     1           131072     11.7       11.2       7.0         4.9          23.1   1454
//  1  32768    64/8  1      32   256     1           524288     11.7       44.7       7.0         4.9          56.6   2370
//  8   8192    64/8  1       4   256     1          1048576     11.7       89.5       7.0         3.7         100.2   2680
//  8  32768    64/8  1       4   256     1          4194304     11.7      357.9       7.0         3.7         368.6   2913
// 64   8192    64/8  1       1   512     2          4194304     11.4      738.2      11.0         0.0         749.2   2866
// 64  32768    64/8  1       1   512     2         16777216     11.4     2952.8      11.0         0.0        2963.8   2898
//  1 131072    64/8  1      32   256     1          2097152     11.7      179.0       7.0         4.9         190.9   2813
//  1   8192    32/8  4      32   256     1           131072     11.7       11.2       7.0         6.5          24.7   1359
//  1 131072    64/8  4      16   256     1          4194304     11.7      357.9       7.0         4.9         369.8   2903
// 64   8192    64/8  4       1  1024     4          4194304     11.4     1476.4      19.0         0.0        1495.4   2872
#pragma once

#include <cstdint>

namespace flatattn::cuda {

struct DecodeWork {
  std::int64_t batch = 0, hkv = 0, row_blocks = 0;
  std::int64_t keys = 0;  ///< upper bound of the keys one row block reads
  int sm_count = 0;
  int ctas_per_sm = 1;    ///< resident decode CTAs per SM (shared memory and registers)
  int d = 128;            ///< head dim (bytes per key: 2 * D * 2 for K and V in f16/bf16)
  int rows_per_block = 16;  ///< query rows of one row block (min(16, Nq * Hq / Hkv)): the combine's work
  double hbm_gbs = 3000;  ///< the device's copy bandwidth, GB/s
};

/// The model's terms for one split count (named so predictions can be compared with measurements).
struct DecodePlan {
  int splits = 1;                      ///< the split count (effective: every split has >= 1 key tile)
  std::int64_t ctas = 0;               ///< B * Hkv * row_blocks * splits
  std::int64_t waves = 0;              ///< ceil(ctas / capacity)
  std::int64_t kv_bytes = 0;           ///< K and V bytes all row blocks read (capacity keys)
  std::int64_t kv_bytes_per_cta = 0;   ///< the largest split's share
  std::int64_t partial_bytes = 0;      ///< fp32 partials written (and read back by the combine): 4 (D + 1) per row and split
  double cta_gbs = 0;                  ///< streaming rate per CTA
  double stream_us = 0, fixed_us = 0, combine_us = 0;
  double predicted_us = 0;             ///< fixed + stream + combine
  [[nodiscard]] double predicted_gbs() const { return predicted_us > 0 ? kv_bytes / (predicted_us * 1e3) : 0; }
};

inline constexpr int kMinTilesPerSplit = 4;  ///< 256 keys
inline constexpr int kMaxSplits = 128;
inline constexpr double kCtaGBs = 15.0;       ///< one decode CTA's streaming rate under load
inline constexpr double kLaunchUs = 3.0;      ///< stream event to the first CTA, last CTA to the event
inline constexpr double kCtaLatencyUs = 4.0;  ///< a CTA's dependent chain: seqlens, block table, first tile; merge
inline constexpr double kArriveUs = 1.0;      ///< the partial stores' fence, the atomic arrival, the barriers
inline constexpr double kL2RoundTripUs = 0.4; ///< one dependent L2 round trip of the combine, under load
inline constexpr double kMemsetUs = 1.5;      ///< the counters' cudaMemsetAsync node before the kernel
inline constexpr double kTieFraction = 0.005;  ///< 0.5 %: a near tie goes to more splits

/// The model's terms for w with `splits` splits.
DecodePlan model_decode(const DecodeWork& w, int splits);

/// The planner's plan for w: the largest split count within kTieFraction of the best prediction.
DecodePlan plan_decode(const DecodeWork& w);

/// The planner's split count (>= 1) for w: plan_decode(w).splits.
int plan_decode_splits(const DecodeWork& w);

}  // namespace flatattn::cuda
