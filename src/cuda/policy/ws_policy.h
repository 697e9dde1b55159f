// When the sm90 family's Flash forward runs the warp-specialized TMA kernel (src/cuda/sm90/ws_fwd_kernel.cuh)
// instead of sm90/flash_kernel.cuh: one row per head dim with the shortest key length from which it is faster,
// and the consumers' schedule it runs (2: intra-warpgroup overlap and ping-pong of the two consumer warpgroups).
// Measured on an H100, bf16, B*N = 16k, Hq*D = 2048, each pair in one run (bench/results/sm90-ws-h100-f2e2b19.md,
// bench/results/sm90-ws-default-h100-ecd78b0.md):
//   D = 128: schedule 2 faster from N = 512 (385 vs 317 TFLOP/s) to 16k (633 vs 470), causal too; slower below.
//   D = 64:  schedule 2 faster from N = 4096 (407 vs 397) to 16k (434 vs 405); at 2048 slower (385 vs 395,
//            causal 308 vs 312), at 1024 and below no faster.
// Changing a number here changes speed, never results (both kernels are tested against the oracle).
// FLATATTN_CUDA_SM90_WS (src/cuda/family.h) overrides the table: 0 never, 1-3 always with that schedule.
// D = 256 (policy/ws_tile.h: 64-key blocks) has no row until it is measured; a row {.d = 256, ...} is all it takes
// for the planner to run it there (dispatch then moves those calls from the sm80 family: src/cuda/ws_route.h).
// The rows apply to the plain variant on batched problems only (softcap, ALiBi and varlen run it when forced).
#pragma once

#include <cstdint>

namespace flatattn::cuda {

struct WsAutoRule {
  int d;               ///< head dim of the instance
  std::int64_t min_nk; ///< the warp-specialized kernel from this many keys on
  int schedule;        ///< its consumer schedule (ws_fwd_mainloop.cuh)
};

inline constexpr WsAutoRule kWsAuto[] = {
    {.d = 64, .min_nk = 4096, .schedule = 2},
    {.d = 128, .min_nk = 512, .schedule = 2},
};

/// The schedule the table picks for head dim d and Nk keys, 0 for the other sm90 kernel.
constexpr int ws_auto_schedule(int d, std::int64_t nk) {
  for (const WsAutoRule& r : kWsAuto)
    if (r.d == d && nk >= r.min_nk) return r.schedule;
  return 0;
}

}  // namespace flatattn::cuda
