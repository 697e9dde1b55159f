// Host side of the warp-specialized forward (ws_fwd_kernel.cuh): what it serves, whether this call runs it
// (the cost model's pick: ws_route.h, policy/heuristics.h; or FLATATTN_CUDA_SM90_WS: src/cuda/family.h), its tensor maps and its
// launch. Called by launch_fwd (src/cuda/launch.cuh) for the sm90 family's D = 64 / 128 / 256 instances (the
// decision itself: ws_route.h); included only by generated instance files (through launch.cuh).
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "flatattn/error.h"
#include "src/core/variant.h"
#include "src/cuda/common/dtype.cuh"
#include "src/cuda/family.h"
#include "src/cuda/launch_api.h"
#include "src/cuda/launch_common.cuh"
#include "src/cuda/params_host.h"
#include "src/cuda/policy/ws_policy.h"
#include "src/cuda/runtime.h"
#include "src/cuda/sparse_host.h"
#include "src/cuda/tma_map.h"
#include "src/cuda/ws_route.h"
#include "src/cuda/sm90/ws_fwd_kernel.cuh"
#include "src/cuda/sm90/ws_fwd_persistent.cuh"

namespace flatattn::cuda {

/// Refuses what the warp-specialized forward does not serve yet (the additive bias; a varlen call without query
/// rows).
inline void ws_refuse(const std::string& value, const std::string& fix) {
  throw Error(Error::Kind::unsupported, "FLATATTN_CUDA_SM90_WS", value,
              "the warp-specialized sm90 forward serves the plain, softcap, alibi, dropout and dropout_softcap variants, batched and varlen, dense and block-sparse, at D = 64, 128, 256 so far",
              fix + ", or unset FLATATTN_CUDA_SM90_WS (the planner then picks a kernel that serves it)");
}

/// FLATATTN_SM90_WS_CHECK=1 (tests, probes; read at every launch): each launch is followed by a synchronize and
/// a look at the kernel's watchdog record (sm90/tma.cuh WsTimeout).
inline bool ws_check_requested() {
  const char* env = std::getenv("FLATATTN_SM90_WS_CHECK");
  return env != nullptr && env[0] == '1' && env[1] == '\0';
}

/// FLATATTN_SM90_WS_PERSISTENT_GRID=N (tests, sanitizer runs; read at every launch): the persistent kernel's grid
/// holds at most N CTAs instead of one per SM, so that small problems make each CTA walk many tiles. Unset or empty:
/// no cap (0); anything but a positive integer throws an Error naming the variable.
inline int ws_persistent_grid_cap() {
  const char* env = std::getenv("FLATATTN_SM90_WS_PERSISTENT_GRID");
  if (env == nullptr || env[0] == '\0') return 0;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  if (*end != '\0' || v < 1 || v > (1L << 30))
    throw Error(Error::Kind::invalid_argument, "FLATATTN_SM90_WS_PERSISTENT_GRID", env, "a positive integer (CTAs)",
                "set it to the number of CTAs the persistent warp-specialized forward may use, or unset it (one per SM)");
  return static_cast<int>(v);
}

/// Waits for the launch on `stream`, then throws when one of its barrier waits timed out (clearing the record,
/// so the next launch runs a working pipeline again): the call's outputs are wrong, and the message names the
/// barrier, parity, block and thread of the first timeout. Debugging aid, not a silent fallback: it only
/// reports. Static in the instance file: reads that file's own record.
static inline void ws_check_watchdog(cudaStream_t stream, int d, int sched) {
  check(cudaStreamSynchronize(stream), "synchronize (FLATATTN_SM90_WS_CHECK, sm90 warp-specialized forward)");
  sm90::WsTimeout w{};
  check(cudaMemcpyFromSymbol(&w, sm90::g_ws_timeout, sizeof(w)), "read the watchdog record (FLATATTN_SM90_WS_CHECK)");
  if (w.fired == 0) return;
  const sm90::WsTimeout zero{};
  check(cudaMemcpyToSymbol(sm90::g_ws_timeout, &zero, sizeof(zero)), "clear the watchdog record (FLATATTN_SM90_WS_CHECK)");
  const bool q = w.tag == 999 || w.tag == 998;  // the Q barrier, the persistent kernel's q_empty
  const unsigned slot = q ? 0 : w.tag / 100, which = q ? 4 + (999 - w.tag) : w.tag % 100;
  static const char* const kNames[] = {"full_k", "full_v", "empty_k", "empty_v", "q", "q_empty"};
  throw Error(Error::Kind::runtime, "FLATATTN_CUDA_SM90_WS",
              "schedule " + std::to_string(sched) + " D " + std::to_string(d) + ": a barrier wait timed out (" +
                  (which <= 5 ? kNames[which] : "?") + " slot " + std::to_string(slot) + " tag " + std::to_string(w.tag) +
                  " parity " + std::to_string(w.parity) + ", block " + std::to_string(w.block) + " thread " +
                  std::to_string(w.thread) + ")",
              "every barrier wait completes within FLATATTN_SM90_WS_WATCHDOG_NS (the pipeline is broken: the outputs are wrong)",
              "report it with the shape; unset FLATATTN_CUDA_SM90_WS");
}

/// kAsked: FLATATTN_CUDA_SM90_WS's value (1, 2, 3), the consumers' schedule (ws_fwd_mainloop.cuh). Ping-pong (2)
/// pairs two consumer warpgroups; a tile with three (D = 64, policy/ws_tile.h) runs the overlap alone (1) for it,
/// and the Report's kernel name says so ("_ws1").
template <class E, int D, class V, int kAsked>
LaunchInfo launch_ws(const LaunchArgs& a) {
  using S = sm90::WsShape<D>;
  constexpr int kSched = kAsked == 2 && S::kConsumerWGs != 2 ? 1 : kAsked;
  static_assert(kWsProducerWarps * 32 == S::kThreads - S::kConsumerThreads &&
                    ws_cta_regs(ws_tile(D)) == S::kProducerRegs * (S::kThreads - S::kConsumerThreads) + S::kConsumerRegs * S::kConsumerThreads,
                "policy/ws_policy.h and ws_tile.h describe this kernel's warps and registers to the cost model: they must match");
  static std::atomic<std::uint64_t> attr_done{0}, attr_done_varlen{0};  // one per kernel
  const Problem& pr = *a.problem;
  const FwdTensors& t = *a.tensors;
  // Varlen with no query row at all: no tensor map over zero rows (nothing to write either; a violation in
  // its cu_seqlens would go unflagged, so it is refused rather than skipped).
  if (pr.varlen && pr.total_q == 0 && pr.nq > 0 && pr.batch > 0)
    ws_refuse("a varlen call with no query rows (total_q = 0)", "call the other kernel for it");
  // Block-sparse (issue 16): a CTA's 128 rows in one query block of the lists, each listed key block whole kernel
  // key blocks (dispatch routes only such calls here unless FLATATTN_CUDA_SM90_WS forces this kernel).
  if (pr.sparse.on) check_sparse_tile(pr.sparse, S::kBlockM, S::kBlockN);
  const std::int64_t n_m = (pr.nq + S::kBlockM - 1) / S::kBlockM;
  const std::int64_t ctas = n_m * pr.hq * pr.batch;
  if (ctas == 0) return {S::kBlockM, S::kBlockN, nullptr};
  check_grid(ctas, "ceil(Nq / " + std::to_string(S::kBlockM) + ") * Hq * B");

  // Before any work: both may throw (a bad value of their variables).
  const int persistent_mode = sm90_ws_persistent();  // -1: kWsPersistentDefault's chooser for this call
  const bool grows = pr.mask.right >= 0 && pr.mask.left < 0;  // causal-like: a tile's key range grows with its rows
  const bool persistent =
      pr.sparse.on ? ws_persistent_sparse_for(persistent_mode)
                   : ws_persistent_dense(persistent_mode, device_info(a.device),
                                         Workload{pr.batch, pr.hq, pr.hkv, pr.nq, pr.nk, D, pr.dtype, pr.mask});
  // The persistent grid's CTAs at most: one per SM, or FLATATTN_SM90_WS_PERSISTENT_GRID's cap when smaller.
  int sms = 0;
  if (persistent) {
    const int grid_cap = ws_persistent_grid_cap(), sm_count = device_info(a.device).sm_count;
    sms = grid_cap > 0 && grid_cap < sm_count ? grid_cap : sm_count;
  }
  sm90::WsParams wp;
  wp.p = make_params(pr, t, a.meta_err);
  constexpr bool kBf16 = std::is_same_v<E, BF16>;
  const std::array<TileMapShape, 3> shapes = ws_map_shapes(D, pr, t);
  wp.tq = make_tile_map(shapes[0], kBf16);
  wp.tk = make_tile_map(shapes[1], kBf16);
  wp.tv = make_tile_map(shapes[2], kBf16);

  if (pr.sparse.on) {
    // The block-sparse kernel (sm90/ws_fwd_persistent.cuh ws_fwd_sparse_kernel): one CTA per tile, or persistent (at
    // most one per SM, the static stride without pairs: a tile's work is its lists', not the mask's).
    using SP = sm90::WsPersistentShape<D>;
    static std::atomic<std::uint64_t> s_attr_done{0}, s_attr_done_varlen{0};
    const int ctas_cap = persistent ? sms : static_cast<int>(ctas);
    const sm90::WsTileScheduler sch = sm90::WsTileScheduler::make(static_cast<int>(n_m), ctas, false, ctas_cap);
    auto kernel = pr.varlen ? sm90::ws_fwd_sparse_kernel<E, SP, V, kSched, true> : sm90::ws_fwd_sparse_kernel<E, SP, V, kSched, false>;
    prepare_smem(kernel, SP::kSmemBytes, a.device, pr.varlen ? s_attr_done_varlen : s_attr_done);
    kernel<<<static_cast<unsigned>(sch.grid(ctas_cap)), SP::kThreads, SP::kSmemBytes, static_cast<cudaStream_t>(a.stream)>>>(
        wp, sch, static_cast<int>(pr.hq), pr.sparse);
  } else if (persistent) {
    // The persistent kernel (sm90/ws_fwd_persistent.cuh): at most one CTA per SM walking the tiles; pairs of query
    // blocks under causal-like masks (a tile's key range grows with its rows: no left window bound).
    using SP = sm90::WsPersistentShape<D>;
    static std::atomic<std::uint64_t> p_attr_done{0}, p_attr_done_varlen{0};
    const sm90::WsTileScheduler sch = sm90::WsTileScheduler::make(static_cast<int>(n_m), ctas, grows, sms);
    auto kernel = pr.varlen ? sm90::ws_fwd_persistent_kernel<E, SP, V, kSched, true>
                            : sm90::ws_fwd_persistent_kernel<E, SP, V, kSched, false>;
    prepare_smem(kernel, SP::kSmemBytes, a.device, pr.varlen ? p_attr_done_varlen : p_attr_done);
    kernel<<<static_cast<unsigned>(sch.grid(sms)), SP::kThreads, SP::kSmemBytes, static_cast<cudaStream_t>(a.stream)>>>(
        wp, sch, static_cast<int>(pr.hq));
  } else {
    auto kernel = pr.varlen ? sm90::ws_fwd_kernel<E, S, V, kSched, true> : sm90::ws_fwd_kernel<E, S, V, kSched, false>;
    prepare_smem(kernel, S::kSmemBytes, a.device, pr.varlen ? attr_done_varlen : attr_done);
    kernel<<<static_cast<unsigned>(ctas), S::kThreads, S::kSmemBytes, static_cast<cudaStream_t>(a.stream)>>>(
        wp, static_cast<int>(n_m), static_cast<int>(pr.hq));
  }
  check(cudaGetLastError(), "kernel launch (sm90 warp-specialized forward)");
  sm90_ws_count_launch();
  if (ws_check_requested()) ws_check_watchdog(static_cast<cudaStream_t>(a.stream), D, kSched);
  // The Report's kernel: the instance's name with the schedule, "flash_sm90_bf16_d128_ws1" ("..._ws2_sparse" for
  // block lists, "..._ws2_p" for the persistent kernel, "..._ws2_sparse_p" for both).
  static const std::string name = std::string("flash_sm90_") + std::string(kBf16 ? "bf16" : "f16") + "_d" +
                                  std::to_string(D) + "_ws" + std::to_string(kSched);
  static const std::string sparse_name = name + "_sparse";
  static const std::string persistent_name = name + "_p";
  static const std::string sparse_persistent_name = name + "_sparse_p";
  if (pr.sparse.on) return {S::kBlockM, S::kBlockN, (persistent ? sparse_persistent_name : sparse_name).c_str()};
  if (persistent) return {S::kBlockM, S::kBlockN, persistent_name.c_str()};
  return {S::kBlockM, S::kBlockN, name.c_str()};
}

}  // namespace flatattn::cuda
