// The planner: for a GPU and an attention call, choose the dataflow (flash or flat) and the tile
// sizes among the kernel variants that are built. The CUDA dispatch passes its registry in as data
// (KernelVariant), so this file does not depend on CUDA code.
//
//   Hardware hw = gpu_preset_for(9, 0, "NVIDIA H100 80GB HBM3", /*sms=*/132);
//   std::vector<KernelVariant> built = ...;            // from the CUDA registry
//   Plan p = plan(hw.gpu, AttnShape{.batch = 4, .nq = 4096, .nk = 4096, .hq = 32, .hkv = 8, .d = 128,
//                                   .causal = true}, built);
//   p.chosen.variant  -> launch it;  p.candidates -> every variant's predicted time (sorted).
// plan() costs well under a millisecond (CTA scheduling is simulated for up to 8 waves, closed-form
// beyond); still, cache the choice per (device, shape) in the dispatch. Load the Hardware once per
// device: load_hardware()/gpu_preset_for() read JSON files from the data root (data_dir.h).
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "src/model/gpu_kernel.h"

namespace flatattn::model {

/// The planner's answer: the chosen variant and every candidate's prediction, fastest first
/// (infeasible ones last, with their reasons).
struct Plan {
  KernelPrediction chosen{};
  std::vector<KernelPrediction> candidates;
};

/// Chooses the fastest feasible variant for `shape`. Candidates are the variants of the dataflow `only`
/// (flash or flat; automatic = both) built for shape.d (or for any D). Throws Error when `variants` is
/// empty or no candidate is feasible (the message lists each candidate's reason).
Plan plan(const Gpu& gpu, const AttnShape& shape, std::span<const KernelVariant> variants,
          Dataflow only = Dataflow::automatic);

/// Reads a kernel-variant list: a preset name (<data root>/model/kernels/<name>.json) or a JSON file
/// {"variants": [{"name", "dataflow": "flash"|"flat", "block_m", "block_n", "warps", "stages", "path",
/// "head_dims": [..]}]}; a variant with head_dims expands to one variant per head dim.
std::vector<KernelVariant> load_kernel_variants(std::string_view name_or_path);

/// Names of the shipped kernel-variant lists.
std::vector<std::string> kernel_presets();

}  // namespace flatattn::model
