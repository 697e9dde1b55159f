// Context parallelism (ring attention, python/flatattn/distributed/ring.py) in the cost model: per ring hop,
// the attention block's kernel time from the GPU planner against the time to pass a K/V shard (forward) or a
// K/V shard plus an fp32 dK/dV accumulator (backward) over the link to the next GPU. The transfer overlaps
// the compute, so a hop costs max(compute, link) plus the fp32 merge of its partial output. Efficiency: the
// rank's share of the full-sequence FLOPs at the single-GPU rate of the same kind of work, over that time.
//
//   RingShape s{.world = 8, .n_local = 32768, .hq = 32, .hkv = 8, .d = 128, .causal = true};
//   RingPrediction p = predict_ring(hw.gpu, variants, s, Link{});   // p.efficiency, p.hops ...
//
// Assumptions (docs/context_parallel.md): the backward block costs 2.5x its forward (the FLOP ratio of
// docs/design.md; the planner models forward kernels only); the link rate is the per-direction NVLink rate
// times an efficiency that has not been measured here; merge and gradient accumulation stream through HBM.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "src/model/gpu_kernel.h"

namespace flatattn::model {

/// One GPU's link to its ring neighbour.
struct Link {
  double gbps = 450;        ///< per direction, GB/s (H100 SXM NVLink 4: 900 GB/s both directions together)
  double efficiency = 0.8;  ///< reachable fraction for large P2P messages (an assumption until measured)
};

/// A ring_attention call: n_local tokens per rank on `world` ranks; causal uses the zigzag layout (two
/// chunks of n_local / 2 per rank), non-causal the contiguous one.
struct RingShape {
  int world = 2;
  std::int64_t batch = 1, n_local = 8192, hq = 32, hkv = 8, d = 128;
  DType dtype = DType::bf16;
  bool causal = false;
};

/// One hop of the slowest rank.
struct RingHop {
  double compute_s = 0;   ///< forward block kernel time (planner)
  double link_fwd_s = 0;  ///< K/V shard transfer (0 on the last hop)
  double link_bwd_s = 0;  ///< K/V shard (not on the last hop) + fp32 dK/dV accumulator
  double merge_s = 0;     ///< fp32 LSE merge (forward) / dQ, dK, dV accumulation (backward), HBM-bound
  double flops = 0;       ///< forward FLOPs of the block
};

struct RingPrediction {
  std::vector<RingHop> hops;
  double fwd_s = 0, bwd_s = 0;  ///< predicted times of the forward and backward rings
  double ideal_s = 0;           ///< the rank's share (fwd + bwd FLOPs) at the single-GPU rate
  double single_tflops = 0;     ///< that rate (forward TFLOP/s of the single-GPU problem, see below)
  double efficiency = 0;        ///< ideal_s / (fwd_s + bwd_s)
  double link_over_compute = 0; ///< the largest link / compute ratio of any hop (>1: the link is exposed)
};

/// Predicts one call. The single-GPU rate comes from the planner on a problem of the same kind: non-causal,
/// n_local queries against world x n_local keys (one rank's pairs exactly); causal, a square causal sequence
/// of n_local x sqrt(world) tokens (as many pairs). Throws Error for world < 1, an odd n_local under causal
/// (zigzag), a link rate <= 0, or what plan() throws.
RingPrediction predict_ring(const Gpu& gpu, std::span<const KernelVariant> variants, const RingShape& shape,
                            const Link& link);

}  // namespace flatattn::model
