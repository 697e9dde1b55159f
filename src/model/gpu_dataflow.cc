#include "src/model/gpu_dataflow.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "flatattn/error.h"
#include "src/model/planner.h"

namespace flatattn::model {

namespace {

/// Rows of the fp32 logit tile a softmax-epilogue GEMM keeps per CTA.
constexpr double kEpilogueRows = 64;

}  // namespace

Cost gpu_dataflow_cost(const Gpu& gpu, const Workload& w, std::int64_t n, DataflowKind dataflow,
                       std::span<const KernelVariant> variants, std::string& mapping) {
  AttnShape s;
  s.batch = w.batch;
  s.nq = s.nk = n;
  s.hq = w.heads;
  s.hkv = w.kv_heads;
  s.d = w.head_dim;
  s.dtype = w.dtype;
  s.causal = w.causal;
  const double rate = gpu.tensor_rate(w.dtype);
  Cost c;
  c.flops = s.flops();
  c.ideal_s = c.flops / rate;

  if (dataflow == DataflowKind::flash || dataflow == DataflowKind::flat) {
    try {
      const Plan p = plan(gpu, s, variants, dataflow == DataflowKind::flash ? Dataflow::flash : Dataflow::flat);
      const KernelPrediction& k = p.chosen;
      char tiles[64];
      std::snprintf(tiles, sizeof tiles, " (%dx%d, %d warps)", k.variant.block_m, k.variant.block_n, k.variant.warps);
      mapping = k.variant.name;
      mapping.append(tiles);
      c.offchip_bytes = k.dram_bytes;
      c.onchip_bytes = k.l2_bytes;
      c.buffer_bytes = k.smem_bytes;
      c.compute_s = k.schedule_s;
      c.sfu_s = k.softmax_s;
      c.memory_s = k.memory_s;
      c.runtime_s = k.time_s;
    } catch (const Error& e) {
      c.feasible = false;
      // The limit names every candidate; the first one's reason says enough in a table.
      const std::string& all = e.limit();
      const std::size_t cut = all.find("; ");
      c.infeasible_reason = cut == std::string::npos ? all : all.substr(0, cut) + "; ...)";
      c.runtime_s = INFINITY;
      mapping.assign(1, '-');
      return c;
    }
  } else {
    // Unfused: three kernels (two when flex puts the softmax in the first GEMM's epilogue).
    const double b = double(element_size(w.dtype)), bh = double(w.batch) * double(w.heads);
    const double nn = double(n) * double(n), nd = double(n) * double(w.head_dim);
    const double gemm_rate = rate * gpu.gemm_efficiency, bw = gpu.hbm_bw * gpu.stream_efficiency;
    const double gemm_flops = 2.0 * bh * nn * double(w.head_dim);
    const bool epilogue = dataflow == DataflowKind::flex && kEpilogueRows * double(n) * 4.0 <= gpu.smem_per_cta;
    const double g1_bytes = bh * (2 * nd + nn) * b, g2_bytes = bh * (nn + 2 * nd) * b, sm_bytes = bh * 2 * nn * b;
    const double g1 = std::max(gemm_flops / gemm_rate, g1_bytes / bw) + gpu.launch_s;
    const double g2 = std::max(gemm_flops / gemm_rate, g2_bytes / bw) + gpu.launch_s;
    const double sm = epilogue ? 0.0 : sm_bytes / bw + gpu.launch_s;
    mapping = epilogue ? "GEMM+softmax epilogue, GEMM" : "GEMM, softmax, GEMM";
    c.offchip_bytes = g1_bytes + g2_bytes + (epilogue ? 0.0 : sm_bytes);
    c.compute_s = 2 * gemm_flops / gemm_rate;
    c.memory_s = c.offchip_bytes / bw;
    c.runtime_s = g1 + g2 + sm;
  }
  c.utilization = c.ideal_s / c.runtime_s;
  return c;
}

}  // namespace flatattn::model
