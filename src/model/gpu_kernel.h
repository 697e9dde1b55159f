// Time of one of our fused attention kernels (flash or flat dataflow) on an NVIDIA GPU, predicted from
// the GPU's rates (hardware.h) and the kernel variant's tiles. Host C++ only: variants are data.
//
// Model (per CTA = one query block of one (batch, head)):
//   tensor   = 4 Br (key blocks x Bc) D / (per-SM tensor rate x mma_efficiency)      [padded tiles]
//   softmax  = exps / MUFU rate + fp32 ops / FP32 rate  (flash adds the per-block rescale of m, l, O)
//   smem     = shared-memory bytes / smem bandwidth (flash: every warp reads the whole K and V block,
//              Q split across warps, FA2 Sec. 3.3; flat: warps split keys for Q K^T and D for P V,
//              the R x Nk logit block makes an extra write/read/write/read pass through smem)
//   CTA time = max(smem, tensor + softmax - overlap x min(tensor, softmax)) + overhead / co-resident CTAs
// CTAs are list-scheduled over the SMs in launch order (m-block fastest), the SM rate scaled by
// occupancy (resident warps / warps_to_saturate): this gives wave quantization and causal imbalance.
// A persistent variant instead walks the tiles as the kernel does (src/core/tile_walk.h, min(SMs, units) CTAs,
// a static stride, causal pairs): CTA time = sum of its tiles' cycles + cta_overhead (first fill, last epilogue)
// + (its tiles - 1) x persistent_tile_cycles; the call's schedule is its longest CTA.
// Memory: DRAM bytes (Q, K, V once per KV head thanks to L2, O, LSE) / HBM bandwidth and L2 -> SM
// bytes (K/V re-read per query block) / L2 bandwidth. time = max(schedule, memory) + launch.
// A flat variant is infeasible when its R x Nk logit block does not fit on chip: the per-CTA shared
// memory (fp32, plus Q and the K/V ring) or, for register variants, its row capacity cap_n; any variant
// is infeasible when its registers exceed the thread budget.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flatattn/dtype.h"
#include "flatattn/options.h"
#include "src/core/mask.h"
#include "src/model/hardware.h"

namespace flatattn::model {

/// One attention call (forward) as the planner sees it. Causal/window follow src/core/mask.h.
struct AttnShape {
  std::int64_t batch = 1, nq = 0, nk = 0, hq = 0, hkv = 0, d = 0;
  DType dtype = DType::bf16;
  bool causal = false;
  bool bottom_right = true;          ///< causal/window alignment when nq != nk
  std::int64_t window_left = -1;     ///< -1: unbounded
  std::int64_t window_right = -1;    ///< -1: unbounded (0 when causal)
  /// Sparse attention (docs/sparse.md), counted in src/model/sparse_blocks.h. Block-sparse: the share of the
  /// band's key blocks each query block visits, in (0, 1]; 0 = not block-sparse.
  double density = 0;
  /// Local + global (Longformer): the global positions (sorted, distinct, < min(Nq, Nk)), the band being the
  /// window; empty = off. Not with density (BigBird is not modeled).
  std::vector<std::int32_t> globals;

  [[nodiscard]] MaskSpec mask() const;
  /// Block-sparse or local + global: served by the Flash kernels only (the CUDA dispatch never sends a sparse
  /// call to FLAT), every key block from its list.
  [[nodiscard]] bool sparse() const { return density > 0 || !globals.empty(); }
  /// Forward FLOPs as the FlashAttention papers count them: 4 x visible (query, key) pairs x D x Hq x B, the
  /// pairs of the visited blocks only for a sparse shape (visible_pairs, sparse_blocks.h).
  [[nodiscard]] double flops() const;
  /// Throws Error naming the field when a size is < 1, Hq is not a multiple of Hkv, density is outside
  /// (0, 1] (when set), the globals are not sorted distinct positions < min(Nq, Nk), or both are set.
  void validate() const;
};

/// One compiled kernel variant, described as data (the CUDA side passes its registry in).
struct KernelVariant {
  std::string name;                   ///< e.g. "flash_128x64_w4"
  Dataflow dataflow = Dataflow::flash;  ///< flash or flat
  int block_m = 128;                  ///< query rows per CTA (FLAT: R)
  int block_n = 64;                   ///< keys per K/V block
  int warps = 4;                      ///< warps per CTA
  int stages = 2;                     ///< K/V shared-memory pipeline depth
  std::string path;                   ///< kernel family of the calibration ("sm80", "sm90"); "" = default
  int head_dim = 0;                   ///< 0: any D; otherwise only this D (instantiated per head dim)
  /// flat only. 0: the R x Nk logit block lives in shared memory (fp32; warps split the keys for
  /// Q K^T and D for P V). > 0: it lives in registers, each warp its own rows (src/cuda/flat), and the
  /// kernel serves Nk <= cap_n (policy/tile_size.h: cap_blocks x block_n).
  int cap_n = 0;
  /// Warps that only load (a warp-specialized kernel's producer warpgroup: 4); `warps` counts the computing
  /// ones. They take warp slots and registers, no MMA or softmax work.
  int producer_warps = 0;
  /// Registers the CTA holds (its launch allocation: threads x launch-bound registers, which setmaxnreg only
  /// redistributes); 0: the estimate (fragments + the path's overhead) x threads.
  int cta_regs = 0;
  /// A persistent kernel: grid = min(SMs, work units), each CTA walking its tiles with the static stride of
  /// src/core/tile_walk.h (causal-like masks: pairs of query blocks), a tile's fill and epilogue overlapped with its
  /// neighbours' work (GpuPath::persistent_tile_cycles), instead of one CTA per tile in the hardware's dynamic order.
  bool persistent = false;
};

/// Predicted time of one variant on one shape, with the terms that produced it.
struct KernelPrediction {
  KernelVariant variant{};
  bool feasible = true;
  std::string reason;                 ///< why not, when infeasible
  double time_s = 0;                  ///< predicted kernel time (infinity when infeasible)
  double schedule_s = 0;              ///< list-scheduled compute over the SMs
  double memory_s = 0;                ///< max(DRAM / HBM, L2 traffic / L2 bandwidth)
  double tensor_s = 0, softmax_s = 0, smem_s = 0;  ///< summed over CTAs, per SM-equivalent
  double flops = 0;                   ///< FlashAttention-convention FLOPs of the call
  double dram_bytes = 0, l2_bytes = 0;
  std::int64_t ctas = 0;
  int ctas_per_sm = 0;                ///< occupancy limit
  double waves = 0;                   ///< ctas / (SMs x ctas_per_sm)
  int smem_bytes = 0;                 ///< per CTA
  int regs_per_thread = 0;            ///< estimate
  [[nodiscard]] double tflops() const { return feasible && time_s > 0 ? flops / time_s * 1e-12 : 0; }
};

/// Predicts one variant. Never throws for an infeasible variant (feasible = false, reason set); throws
/// Error for an invalid shape, a dtype the GPU lacks, or an unknown calibration path.
KernelPrediction predict(const Gpu& gpu, const AttnShape& shape, const KernelVariant& variant);

}  // namespace flatattn::model
