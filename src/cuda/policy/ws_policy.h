// When the sm90 family's Flash forward runs the warp-specialized TMA kernel (src/cuda/sm90/ws_fwd_kernel.cuh)
// instead of sm90/flash_kernel.cuh: one row per head dim with the shortest key length from which it is faster,
// and the consumers' schedule it runs (2: intra-warpgroup overlap and ping-pong of the two consumer warpgroups).
// Measured on an H100, bf16, B*N = 16k, Hq*D = 2048, same run (bench/results/sm90-ws-h100-f2e2b19.md):
//   D = 128: schedule 2 faster from N = 512 (409 vs 339 TFLOP/s) to 16k (663 vs 472); slower below.
//   D = 64:  schedule 2 faster from N = 2048 (402 vs 395) to 16k (457 vs 408); slower at 1024 (348 vs 367).
// Changing a number here changes speed, never results (both kernels are tested against the oracle).
// FLATATTN_CUDA_SM90_WS (src/cuda/family.h) overrides the table: 0 never, 1-3 always with that schedule.
#pragma once

#include <cstdint>

namespace flatattn::cuda {

struct WsAutoRule {
  int d;               ///< head dim of the instance
  std::int64_t min_nk; ///< the warp-specialized kernel from this many keys on
  int schedule;        ///< its consumer schedule (ws_fwd_mainloop.cuh)
};

inline constexpr WsAutoRule kWsAuto[] = {
    {.d = 64, .min_nk = 2048, .schedule = 2},
    {.d = 128, .min_nk = 512, .schedule = 2},
};

/// The schedule the table picks for head dim d and Nk keys, 0 for the other sm90 kernel.
constexpr int ws_auto_schedule(int d, std::int64_t nk) {
  for (const WsAutoRule& r : kWsAuto)
    if (r.d == d && nk >= r.min_nk) return r.schedule;
  return 0;
}

}  // namespace flatattn::cuda
