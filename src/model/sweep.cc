#include "src/model/sweep.h"

#include <cmath>

#include "flatattn/error.h"
#include "src/model/gpu_dataflow.h"
#include "src/model/planner.h"

namespace flatattn::model {

std::vector<std::int64_t> default_seq_lens() {
  std::vector<std::int64_t> v;
  for (std::int64_t n = 512; n <= 65536; n *= 2) v.push_back(n);
  return v;
}

const SweepRow* SweepResult::find(std::int64_t n, DataflowKind d) const {
  for (const SweepRow& r : rows)
    if (r.n == n && r.dataflow == d) return &r;
  return nullptr;
}

double SweepResult::speedup(std::int64_t n, DataflowKind d, DataflowKind base) const {
  const SweepRow *a = find(n, d), *b = find(n, base);
  if (a == nullptr || b == nullptr || !a->cost.feasible || !b->cost.feasible) return NAN;
  return b->total_s() / a->total_s();
}

double SweepResult::geomean_speedup(DataflowKind d, DataflowKind base) const {
  double log_sum = 0;
  int count = 0;
  for (std::int64_t n : options.ns) {
    const double s = speedup(n, d, base);
    if (std::isfinite(s) && s > 0) {
      log_sum += std::log(s);
      ++count;
    }
  }
  return count ? std::exp(log_sum / count) : NAN;
}

SweepResult sweep(const Hardware& hw, const Workload& w_in, const SweepOptions& opt) {
  SweepResult r;
  r.hardware = hw;
  r.workload = w_in;
  r.options = opt;
  if (opt.batch) {
    if (*opt.batch < 1)
      throw Error(Error::Kind::invalid_argument, "batch", std::to_string(*opt.batch), "must be >= 1", "give a batch size >= 1");
    r.workload.batch = *opt.batch;
  }
  if (r.options.ns.empty()) r.options.ns = w_in.seq_lens.empty() ? default_seq_lens() : w_in.seq_lens;
  for (std::int64_t n : r.options.ns)
    if (n < 1 || n > (std::int64_t(1) << 24))
      throw Error(Error::Kind::invalid_argument, "N", std::to_string(n), "sequence lengths must be in [1, 16M]",
                  "give N values like 512,1024 or a sweep 512:65536");
  if (r.options.dataflows.empty())
    r.options.dataflows = {DataflowKind::naive, DataflowKind::flex, DataflowKind::flat, DataflowKind::flash};
  if (opt.buffer_bytes) {
    if (!(*opt.buffer_bytes > 0))
      throw Error(Error::Kind::invalid_argument, "buffer", std::to_string(*opt.buffer_bytes), "must be > 0 bytes",
                  "give a capacity such as 200KB, 20MB or 2GB");
    if (hw.kind != Hardware::Kind::accelerator)
      throw Error(Error::Kind::invalid_argument, "buffer", std::to_string(*opt.buffer_bytes),
                  "the on-chip capacity override applies to accelerators only",
                  "edit the GPU's smem_per_cta in a hardware file instead");
    r.hardware.accel.buffer_bytes = *opt.buffer_bytes;
  }
  const bool gpu = hw.kind == Hardware::Kind::gpu;
  if (gpu && opt.scope == Scope::layer)
    throw Error(Error::Kind::invalid_argument, "scope", "layer", "the layer (end-to-end) scope models accelerators only",
                "use the attention scope on GPUs");
  std::vector<KernelVariant> variants;
  if (gpu) variants = load_kernel_variants(opt.kernels);

  for (std::int64_t n : r.options.ns) {
    double fc_s = 0;
    if (!gpu && opt.scope == Scope::layer) fc_s = best_fc(r.hardware.accel, r.workload, n, opt.space).runtime_s;
    for (DataflowKind d : r.options.dataflows) {
      SweepRow row;
      row.n = n;
      row.dataflow = d;
      row.fc_s = fc_s;
      if (gpu) {
        row.cost = gpu_dataflow_cost(r.hardware.gpu, r.workload, n, d, variants, row.mapping);
        row.mappings_costed = d == DataflowKind::flash || d == DataflowKind::flat ? std::int64_t(variants.size()) : 1;
      } else {
        const Evaluated e = best_mapping(r.hardware.accel, attn_problem(r.workload, n), d, opt.space);
        row.cost = e.cost;
        row.mapping = e.cost.feasible ? e.mapping.describe() : "-";
        row.mappings_costed = e.mappings_costed;
      }
      r.rows.push_back(std::move(row));
    }
  }
  return r;
}

double paper_geomean_flat_over_flex(const Hardware& hw, const MapSpace& space, Scope scope) {
  SweepOptions opt;
  opt.ns = default_seq_lens();
  opt.dataflows = {DataflowKind::flex, DataflowKind::flat};
  opt.space = space;
  opt.scope = scope;
  opt.batch = 64;
  double log_sum = 0;
  int count = 0;
  for (const std::string& name : paper_workloads()) {
    const SweepResult r = sweep(hw, load_workload(name), opt);
    for (std::int64_t n : r.options.ns) {
      const double s = r.speedup(n, DataflowKind::flat, DataflowKind::flex);
      if (std::isfinite(s) && s > 0) {
        log_sum += std::log(s);
        ++count;
      }
    }
  }
  return count ? std::exp(log_sum / count) : NAN;
}

}  // namespace flatattn::model
