// Host heuristics in plain C++: whether FLAT can hold a problem's rows, and the automatic choice
// between the FLAT and Flash kernels, and between the two sm90 Flash forwards. choose_dataflow and
// choose_sm90_ws are the ONE place those choices are made: they ask the cost model's planner
// (src/model/planner.h) with the built kernels' tiles as candidates.
#pragma once

#include <cstdint>

#include "flatattn/dtype.h"
#include "flatattn/options.h"
#include "src/core/mask.h"
#include "src/cuda/policy/tile_size.h"
#include "src/model/decode.h"

namespace flatattn::cuda {

struct DeviceInfo;

/// What the choice looks at.
struct Workload {
  std::int64_t batch = 1, hq = 1, hkv = 1;
  std::int64_t nq = 0, nk = 0;  ///< varlen: the longest lengths
  int d = 0;                    ///< the kernel's head dim (after padding)
  DType dtype = DType::bf16;
  MaskSpec mask{};              ///< causal / window, as validated
};

/// True when the FLAT kernel of family f and head dim d holds a whole key row of nk.
bool flat_fits(Family f, int d, std::int64_t nk);

/// Flash or FLAT for Dataflow::automatic: the planner's prediction for this device (its SM count,
/// shared memory and published/measured rates, data/model/hardware) over the two built kernels of
/// head dim w.d (tiles from tile_size.h). Cached per (device, shape), at most 4096 shapes (the cache is
/// cleared when full); planning costs < 1 ms.
/// Throws flatattn::Error when the model's data files cannot be found (set FLATATTN_DATA_DIR).
Dataflow choose_dataflow(const DeviceInfo& dev, Family f, const Workload& w);

/// Whether the warp-specialized sm90 forward (policy/ws_tile.h, ws_policy.h) is predicted faster than the kernel
/// the call runs otherwise for w on dev: the older sm90 Flash kernel (policy/tile_size.h; path "sm90"), or at a head
/// dim it lacks (D = 256) the sm80 family's (path "sm80"), against the "sm90_ws" path. False when w.d has no
/// warp-specialized kernel or the shape is empty. Cached like choose_dataflow.
bool choose_sm90_ws(const DeviceInfo& dev, const Workload& w);

/// Whether the warp-specialized sm90 forward's persistent kernel (sm90/ws_fwd_persistent.cuh: min(SMs, work units)
/// CTAs walking the tiles, src/core/tile_walk.h) is predicted faster than its one CTA per tile for w on dev: the same
/// tile (policy/ws_tile.h) described to the model twice, once with KernelVariant::persistent (path "sm90_ws", its
/// persistent_tile_cycles fitted to the stop-30 A/B). False when w.d has no warp-specialized kernel or the shape is
/// empty. Cached like choose_dataflow.
bool choose_sm90_ws_persistent(const DeviceInfo& dev, const Workload& w);

/// The decode cost model's split count for a forward_kvcache step of shape s on dev (src/model/decode.h
/// model_decode_splits: the argmin of the predicted step time over 1..128 splits, with dev's SM count and shared
/// memory and its GPU file's fitted "decode" constants). Used under FLATATTN_DECODE_SPLITS=model
/// (src/cuda/decode/forward_kvcache.cc); the default is the rule of policy/decode_plan.h. Throws Error when s is
/// invalid or dev's GPU file has no decode constants (fitted for the H100 only).
int choose_decode_splits(const DeviceInfo& dev, const model::DecodeShape& s);

}  // namespace flatattn::cuda
