// Whether a forward call runs the warp-specialized sm90 kernel (src/cuda/sm90/ws_fwd_kernel.cuh), and the
// operands its tensor maps describe: one decision for dispatch (src/cuda/dispatch.cc, which moves a head dim
// that has only this kernel on the sm90 family -- D = 256 -- to that family exactly when it runs) and for the
// launcher (launch_ws.cuh). Plain C++ over the host-visible tables (policy/ws_tile.h, policy/ws_policy.h).
#pragma once

#include <array>
#include <cstdint>

#include "src/core/problem.h"
#include "src/core/sparse.h"
#include "src/core/variant.h"
#include "src/cuda/family.h"
#include "src/cuda/policy/heuristics.h"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/policy/ws_policy.h"
#include "src/cuda/policy/ws_tile.h"
#include "src/cuda/runtime.h"
#include "src/cuda/tma_map.h"

namespace flatattn::cuda {

/// The variants the warp-specialized forward serves at head dim d: those whose hooks are the score transform of the
/// variant seam (common/score.cuh: softcap, ALiBi) and dropout's probability hook (pack_probs in ws_fwd_mainloop.cuh,
/// on the sequence's (b, h, row, column) as the other sm90 kernel: one Philox call per 16 elements), with or without
/// softcap -- dropout only where the key block is whole 64-key Philox groups (common/score.cuh for_each_keep; the
/// 80-key block at D = 256 is not). At D = 256 no dropout instance of this kernel is generated
/// (tools/gen_instances.py), so dropout there runs the sm80 family. The additive bias tensor (a
/// staged tile) is not wired into its pipeline: refused when forced. The planner asks the plain call's question for
/// all of them: the hooks add about the same per-element work to both sm90 kernels, and on the H100 the
/// warp-specialized kernel was as fast or faster with ALiBi and softcap wherever it is for the plain call
/// (bench/results/ws-features-h100-067de8d.md: up to 2x at D = 256, where the other kernel is the sm80 family's).
constexpr bool ws_serves_variant(VariantId v, int d) {
  const bool dropout = v == VariantId::dropout || v == VariantId::dropout_softcap;
  return v == VariantId::plain || v == VariantId::softcap || v == VariantId::alibi ||
         (dropout && ws_tile(d).block_n % 64 == 0);
}

/// The operands of problem pr at kernel head dim d as the copy engine maps them: q, then k and v (absent when
/// there is no key row: no key block is visited, the kernel gets q's map in their place). Batched: (D, N, H, B);
/// varlen: (D, total rows, H, 1) over the packed rows (the kernel offsets the row by the sequence's start).
inline std::array<TileMapShape, 3> ws_map_shapes(int d, const Problem& pr, const FwdTensors& t) {
  auto shape = [&](const void* base, std::int64_t rows, std::int64_t heads, const auto& st, const char* what, int box) {
    TileMapShape s;
    s.base = base;
    s.cols = pr.d;
    s.rows = rows;
    s.heads = heads;
    s.batch = pr.varlen ? 1 : pr.batch;
    s.s_row = st.n;
    s.s_head = st.h;
    s.s_batch = st.b;
    s.box_rows = box;
    s.what = what;
    return s;
  };
  const int block_n = ws_tile(d).block_n;
  const std::int64_t q_rows = pr.varlen ? pr.total_q : pr.nq, k_rows = pr.varlen ? pr.total_k : pr.nk;
  const TileMapShape q = shape(t.q, q_rows, pr.hq, t.sq, "q", ws_tile(d).block_m);
  if (pr.nk == 0 || k_rows == 0) return {q, q, q};
  return {q, shape(t.k, k_rows, pr.hkv, t.sk, "k", block_n), shape(t.v, k_rows, pr.hkv, t.sv, "v", block_n)};
}

/// Whether the warp-specialized forward at head dim d takes the block lists of s (issue 16): a CTA's query rows
/// (policy/ws_tile.h: 128; a 192-row tile would need query blocks of a multiple of 192) lie in one query block and
/// each listed key block is whole kernel key blocks (launch_ws checks the same).
constexpr bool ws_sparse_fits(int d, const SparseSpec& s) {
  const WsTile t = ws_tile(d);
  return t.block_n > 0 && s.block_q % t.block_m == 0 && s.block_kv % t.block_n == 0;
}

/// The schedule of the warp-specialized forward for this call at kernel head dim d, 0 for another kernel: none
/// where d has no warp-specialized kernel (policy/ws_tile.h); the forced one (FLATATTN_CUDA_SM90_WS=1|2|3;
/// launch_ws refuses what it cannot serve), none (=0), or, for a call it serves (ws_serves_variant, batched,
/// block lists it takes (ws_sparse_fits), operands the copy engine maps) at a head dim the planner knows
/// (policy/ws_policy.h), the cost model's pick for the plain call of that shape (policy/heuristics.h
/// choose_sm90_ws) with the row's schedule. Varlen calls are not routed there by the planner (not measured yet).
/// Block-sparse calls follow the plain call of their shape, unless only this kernel's tile divides their blocks: both kernels walk the same list with the same 128-row
/// grid at D = 128 (the older kernel: 128 x 64 tiles), and per visited block the warp-specialized one is the faster
/// (H100, D = 128, N = 16k: 717 against 419 TFLOP/s, bench/results/sparse-sm90-h100-c8a28ac.md).
inline int ws_schedule_for(int d, const Problem& pr, const FwdTensors& t, VariantId variant) {
  if (ws_tile(d).block_n == 0) return 0;
  const int mode = sm90_ws_requested();
  if (mode != kWsModeAuto) return mode;
  const WsPlannerRow* row = ws_planner_row(d);
  if (row == nullptr || !ws_serves_variant(variant, d) || pr.varlen) return 0;
  if (pr.sparse.on && (!kWsSparseByDefault || !ws_sparse_fits(d, pr.sparse))) return 0;
  for (const TileMapShape& s : ws_map_shapes(d, pr, t))
    if (tile_map_issue(s)) return 0;
  // Lists the older sm90 kernel cannot take (e.g. 192-row blocks at D = 64, whole tiles of this kernel only): this
  // is the one sm90 kernel that serves them, whatever the cost model says of the plain call.
  const FlashTileSize older = flash_tile(Family::sm90, d);
  if (pr.sparse.on && (older.block_m == 0 || pr.sparse.block_q % older.block_m != 0 ||
                       pr.sparse.block_kv % older.block_n != 0))
    return row->schedule;
  const Workload w{pr.batch, pr.hq, pr.hkv, pr.nq, pr.nk, d, pr.dtype, pr.mask};
  if (!choose_sm90_ws(device_info(pr.device.index), w)) return 0;
  return row->schedule;
}

/// Whether a dense call of the warp-specialized forward runs its persistent kernel, under FLATATTN_CUDA_SM90_WS_PERSISTENT's
/// mode (src/cuda/family.h sm90_ws_persistent): 1 always, 0 never, "rule" by policy/ws_policy.h's hand rule, "model" by
/// the cost model (policy/heuristics.h choose_sm90_ws_persistent) for w (w.d: the kernel's head dim; varlen: the longest
/// lengths) on device dev, unset or "auto" by kWsPersistentDefault's chooser. The one decision: launch_ws.cuh launches
/// by it and the tests expect by it.
inline bool ws_persistent_dense(int mode, const DeviceInfo& dev, const Workload& w) {
  if (mode == kWsPersistentAuto) mode = kWsPersistentDefault;
  if (mode == kWsPersistentOff || mode == kWsPersistentOn) return mode == kWsPersistentOn;
  if (mode == kWsPersistentByRule) return ws_persistent_by_rule(w.d, w.nk, w.mask.right >= 0 && w.mask.left < 0);
  return choose_sm90_ws_persistent(dev, w);
}

}  // namespace flatattn::cuda
