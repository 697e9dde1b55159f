// The warp-specialized TMA forward (src/cuda/sm90/ws_fwd_kernel.cuh; tiles: policy/ws_tile.h) as the planner
// sees it. Whether a call runs it instead of the older sm90 kernel (sm90/flash_kernel.cuh) is the cost model's
// choice (policy/heuristics.h choose_sm90_ws): both kernels are described to src/model/gpu_kernel.h (the older
// one by policy/tile_size.h's sm90 row, this one by ws_tile.h plus the warps and registers below) and the faster
// prediction wins. The two calibrated paths ("sm90", "sm90_ws" in data/model/hardware/h100.json) were fitted to 64
// same-lease H100 times of both kernels (data/model/measured/h100-ours-sm90.json, from
// bench/results/sm90-ws-default-h100-f2e2b19.json + sm90-ws2-h100-f2e2b19.json): median error 2 %, the faster
// kernel picked for 31 of 32 shapes (the miss within 5 %); fitted on half the N values it picks 16/16 of the
// other half; on a second lease (ecd78b0) 23/24 (docs/sm90_ws.md). With the D = 256 pairs: 37 of 38.
// A head dim is a candidate only with a row in kWsPlanner. At D = 256 there is no older sm90 kernel:
// the alternative is the sm80 family's. The calibration, unchanged, predicts the 6 measured D = 256 shapes within
// 0.3-5 % (the sm80 kernel within 8-15 %) and picks 6/6 (the kernel is 2.3-2.4x the sm80 one there, 1.01-1.11x
// cuDNN: bench/results/sm90-ws-d256-h100-a19cd47.md).
// The planner runs it for the plain, softcap, ALiBi and dropout variants on batched problems, by the plain call's pick
// (src/cuda/ws_route.h says why); varlen runs it when forced.
// FLATATTN_CUDA_SM90_WS (src/cuda/family.h) overrides the choice: 0 never, 1-3 always with that schedule.
#pragma once

#include <cstdint>

namespace flatattn::cuda {

/// A head dim the planner may run the warp-specialized forward at, and the consumers' schedule it then runs
/// (ws_fwd_mainloop.cuh; 2: intra-warpgroup overlap and ping-pong of the two consumer warpgroups).
struct WsPlannerRow {
  int d;
  int schedule;
};

inline constexpr WsPlannerRow kWsPlanner[] = {
    {.d = 64, .schedule = 1},  // the 192-row tile's three consumers: no ping-pong (ws_tile.h)
    {.d = 128, .schedule = 2},
    {.d = 256, .schedule = 2},
};

/// The row of head dim d, or null when the planner never picks the warp-specialized forward there.
constexpr const WsPlannerRow* ws_planner_row(int d) {
  for (const WsPlannerRow& r : kWsPlanner)
    if (r.d == d) return &r;
  return nullptr;
}

/// Whether the planner sends block-sparse calls (lists of whole tiles of it) to the warp-specialized forward's sparse
/// walk when it sends the plain call of their shape there, or when only its tile divides the lists (src/cuda/ws_route.h).
/// On since stop 29: its suites (CudaSparseWs.AllSchedules, .Varlen) passed on an H100 and it ran 1.44-1.58x the older
/// sparse kernel at D = 128, N = 16k, density 10-100 % (bench/results/ws-defaults-h100-stop29.md). Off, sparse calls
/// keep the older sm90 kernel; FLATATTN_CUDA_SM90_WS=0 does the same per process.
inline constexpr bool kWsSparseByDefault = true;

/// Which of the warp-specialized forward's dense calls (batched and varlen) run its persistent kernel
/// (src/cuda/sm90/ws_fwd_persistent.cuh: grid = min(SMs, work units), each CTA walking its tiles with the static
/// stride of src/core/tile_walk.h, a tile's Q/K/V loads overlapping the previous tile's epilogue; issue 17): by
/// default the hand rule below; under FLATATTN_CUDA_SM90_WS_PERSISTENT=model the cost model's choice
/// (policy/heuristics.h choose_sm90_ws_persistent; src/cuda/ws_route.h ws_persistent_dense is the one decision the
/// launcher and the tests share). On the stop-30 H100 A/B (46 shapes, bench/results/h100-stop30-3b4ea35.md) the model
/// picks the faster kernel on 35 and loses > 2 % on 5, where the hand rule picked 29 and lost > 2 % on 11
/// (bench/results/model-persistent-h100-2026-12-07.md). It is not the default yet (kWsPersistentDefault) because its
/// picks differ from the rule where nothing was measured: D = 256 under schedule 2 (the planner's, never timed
/// persistent; the feature suites never ran there) and long non-causal rows at D = 64 / 128.
/// The hand rule (FLATATTN_CUDA_SM90_WS_PERSISTENT=rule, and the default, src/cuda/family.h): the calls whose
/// tiles are short, few key blocks per tile (Nk small) or causal-like masks, where half the tiles are short. Its
/// measurements (stop 30, persistent over one CTA per tile, alternating runs): D = 64 and 128 at Nk <= 1024, +4 to
/// +12 %; causal at Nk 2k-4k, +2 to +4 %; non-causal Nk >= 2k, -1 to -2.5 % at 8k-16k; D = 256 mixed (-5 to +15 %).
/// The default since 2026-12-07 (stop 31: the whole test_cuda passed on an H100 with it applied, tree 5df6c54,
/// bench/results/gpu-tests-h100-2026-12-07-stop31.md; stop 32: the forward against cuDNN with it on,
/// bench/results/h100-stop32-9467cde.md).
struct WsPersistentRule {
  int max_d;                   ///< head dims (the kernel's) above this keep one CTA per tile
  std::int64_t max_nk;         ///< any mask: persistent when Nk (varlen: max_seqlen_k) <= this
  std::int64_t max_nk_causal;  ///< causal-like masks (right bound, no left bound): persistent when Nk <= this
};
inline constexpr WsPersistentRule kWsPersistentRule{128, 1024, 4096};

/// Whether the rule sends a dense call of kernel head dim d, Nk = nk (varlen: max_seqlen_k), causal-like or not, to
/// the persistent kernel.
[[nodiscard]] constexpr bool ws_persistent_by_rule(int d, std::int64_t nk, bool causal_like,
                                                   const WsPersistentRule& r = kWsPersistentRule) {
  return d <= r.max_d && (nk <= r.max_nk || (causal_like && nk <= r.max_nk_causal));
}

/// FLATATTN_CUDA_SM90_WS_PERSISTENT's modes (src/cuda/family.h sm90_ws_persistent): the default chooser, never, every
/// dense call, the hand rule's thresholds, the cost model's choice.
inline constexpr int kWsPersistentAuto = -1, kWsPersistentOff = 0, kWsPersistentOn = 1, kWsPersistentByRule = 2,
                     kWsPersistentByModel = 3;
/// The chooser of `auto` (and unset): the hand rule, until the model's picks have run on an H100 (the whole test_cuda
/// under FLATATTN_CUDA_SM90_WS_PERSISTENT=model, and an A/B of model against rule on the shapes where they differ).
inline constexpr int kWsPersistentDefault = kWsPersistentByRule;

/// Whether block-sparse calls run the sparse kernel persistent (at most one CTA per SM walking the tiles, each tile's
/// key blocks its lists') instead of one CTA per tile (both are sm90/ws_fwd_persistent.cuh ws_fwd_sparse_kernel, on
/// different grids). Off until measured on an H100 (issue 16: a 10 % density tile has ~13 key blocks, so its Q load
/// and epilogue are a larger share than in a dense tile; but the static stride cannot balance tiles of unequal lists
/// as the hardware's block scheduler does). FLATATTN_CUDA_SM90_WS_PERSISTENT=0|1 overrides it as for dense calls.
inline constexpr bool kWsPersistentSparse = false;

/// The persistent kernel for a block-sparse call under FLATATTN_CUDA_SM90_WS_PERSISTENT's mode.
[[nodiscard]] constexpr bool ws_persistent_sparse_for(int mode) {
  return mode == kWsPersistentOn || (mode != kWsPersistentOff && kWsPersistentSparse);
}

/// The kernel's warps and registers for the cost model come from its tile row (policy/ws_tile.h: 4 consumer
/// warps per consumer warpgroup compute, the 4 producer warps only load, ws_cta_regs); sm90::WsShape reads the
/// same row (a static_assert in launch_ws.cuh checks they agree).
inline constexpr int kWsProducerWarps = 4;

}  // namespace flatattn::cuda
