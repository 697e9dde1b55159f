// The warp-specialized TMA forward (src/cuda/sm90/ws_fwd_kernel.cuh) as the cost model sees it, and the
// consumers' schedule the planner runs it with. Whether a call runs it instead of the older sm90 kernel
// (sm90/flash_kernel.cuh) is the cost model's choice (policy/heuristics.h choose_sm90_ws): both kernels are
// described to src/model/gpu_kernel.h (the older one by policy/tile_size.h's sm90 row) and the faster
// prediction wins. The calibration of the two kernel paths ("sm90", "sm90_ws" in data/model/hardware/h100.json)
// was fitted to 64 same-lease H100 times of both kernels (data/model/measured/h100-ours-sm90.json, from
// bench/results/sm90-ws-default-h100-f2e2b19.json + sm90-ws2-h100-f2e2b19.json): median error 2 %, the faster
// kernel picked for 31 of 32 shapes (the miss within 5 %); fitted on half the N values it picks 16/16 of the
// other half; on a second lease (ecd78b0) 23/24. FLATATTN_CUDA_SM90_WS (src/cuda/family.h) overrides the choice:
// 0 never, 1-3 always with that schedule.
#pragma once

namespace flatattn::cuda {

/// One head dim of the warp-specialized forward, as the model's KernelVariant needs it (sm90::WsShape<D> holds
/// the same numbers for the kernel: a static_assert in launch_ws.cuh checks they agree).
struct WsKernelRow {
  int d;               ///< head dim of the instance
  int block_m;         ///< query rows per CTA (two consumer warpgroups)
  int block_n;         ///< keys per K/V block
  int stages;          ///< K/V ring depth
  int consumer_warps;  ///< warps that compute (the model's `warps`)
  int producer_warps;  ///< warps that only load
  int cta_regs;        ///< registers the CTA holds: threads x launch-bound registers (setmaxnreg redistributes them)
  int schedule;        ///< the consumers' schedule the planner runs (ws_fwd_mainloop.cuh)
};

inline constexpr WsKernelRow kWsKernels[] = {
    {.d = 64, .block_m = 128, .block_n = 128, .stages = 3, .consumer_warps = 8, .producer_warps = 4,
     .cta_regs = 24 * 128 + 240 * 256, .schedule = 2},
    {.d = 128, .block_m = 128, .block_n = 128, .stages = 2, .consumer_warps = 8, .producer_warps = 4,
     .cta_regs = 24 * 128 + 240 * 256, .schedule = 2},
};

/// The row of head dim d, or null when the warp-specialized forward has none.
constexpr const WsKernelRow* ws_kernel_row(int d) {
  for (const WsKernelRow& r : kWsKernels)
    if (r.d == d) return &r;
  return nullptr;
}

}  // namespace flatattn::cuda
