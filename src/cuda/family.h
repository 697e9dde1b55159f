// Which code-path family serves a device: the per-family probes (does the family's code load here, and
// which PTX/SASS did the driver pick), the base family for a dtype, and whether the sm90 family takes
// over on an sm_90 GPU (FLATATTN_CUDA_SM90). Every answer is cached, so a call costs a few atomic loads.
#pragma once

#include "flatattn/dtype.h"
#include "src/cuda/policy/tile_size.h"

namespace flatattn::cuda {

struct DeviceInfo;

/// Whether a family's code loads on a device (a probe kernel built with the family's targets), with
/// the PTX and SASS versions the driver picked.
struct Probe {
  int err = -1, ptx = 0, bin = 0;
};

/// The probe of family f on device `device` (which must be current), run once per (device, family).
const Probe& probe(int device, Family f);

/// The base family that serves `dt` on `dev` (the sm90 family, where enabled, then takes over the Flash
/// forward and the backward of its head dims): sm86 first on sm_86/sm_89 (their 99 KB shared memory),
/// then sm80 (its SASS also runs on sm_8x), then the compute_75 PTX (Turing; newer GPUs through the JIT).
/// Cached per (device, dtype); throws flatattn::Error (not cached) when no built family serves it.
Family family_for(const DeviceInfo& dev, DType dt);

/// Whether the sm90 family (wgmma Flash forward and backward, sm_90a SASS) runs on `dev`: an sm_90 GPU,
/// the family built and loadable, and not switched off with FLATATTN_CUDA_SM90=0 (any other value or
/// unset: on). The variable is read once per device and cached; sm90_override_changed()
/// (src/cuda/dispatch.h) makes the next call read it again.
bool sm90_enabled(const DeviceInfo& dev);

/// FLATATTN_CUDA_SM90_WS: which of the sm90 family's Flash forwards runs at D = 64 and 128, and whether D = 256
/// runs the warp-specialized kernel (its only sm90 forward) or the sm80 family (src/cuda/ws_route.h). Unset (or "auto"):
/// the cost model (policy/heuristics.h choose_sm90_ws, policy/ws_policy.h) picks the warp-specialized TMA kernel
/// (src/cuda/sm90/ws_fwd_kernel.cuh) where it predicts it faster, for the calls it serves (the plain, softcap, ALiBi and dropout variants on batched problems: causal, windows,
/// GQA, LSE, sinks, any Nq/Nk, block-sparse lists of whole tiles of it, with operands the copy engine can map), and sm90/flash_kernel.cuh otherwise.
/// "1", "2" or "3": the warp-specialized kernel for every call at those head dims (the plain, softcap, alibi and dropout
/// variants, batched or varlen), with the consumer schedule
/// 1: intra-warpgroup overlap, 2: that and ping-pong between the two consumer warpgroups (a tile row with three
/// consumers, policy/ws_tile.h, runs 1 for 2: the Report's kernel name then ends in "_ws1"), 3: no overlap (every
/// product waited at once; the debugging fallback); a call it does not serve is refused with an Error. Any
/// other value ("0"): never. Returns the schedule, kWsModeAuto or 0. Read at the first call and cached like
/// FLATATTN_CUDA_SM90 (sm90_override_changed() makes the next call read it again).
inline constexpr int kWsModeAuto = -1;
int sm90_ws_requested();

/// FLATATTN_CUDA_SM90_WS_PERSISTENT: whether the warp-specialized forward's dense calls run its persistent kernel
/// (src/cuda/sm90/ws_fwd_persistent.cuh: one CTA per SM walking the tiles; the Report's kernel name ends in "_p").
/// Returns policy/ws_policy.h's kWsPersistentAuto when unset, empty or "auto" (kWsPersistentDefault's chooser: the hand
/// rule), kWsPersistentOn for "1" (every dense call), kWsPersistentOff for "0" (none), kWsPersistentByRule for "rule"
/// (the hand rule's thresholds, kWsPersistentRule), kWsPersistentByModel for "model" (the cost model per call:
/// policy/heuristics.h choose_sm90_ws_persistent); any other value throws an Error naming the variable
/// (src/cuda/ws_route.h ws_persistent_dense applies the mode). Read and cached like FLATATTN_CUDA_SM90_WS
/// (sm90_override_changed() makes the next call read it again). Block-sparse calls follow "1" and "0" (the sparse
/// kernel's persistent grid, policy/ws_policy.h ws_persistent_sparse_for) and otherwise kWsPersistentSparse.
int sm90_ws_persistent();

/// How many forward launches went to the warp-specialized kernel in this process (for the tests).
unsigned long long sm90_ws_launches();
void sm90_ws_count_launch();

}  // namespace flatattn::cuda
