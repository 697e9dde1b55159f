// A sweep: one hardware, one workload, sequence lengths x dataflows, the best mapping of each
// (accelerators: search.h; GPUs: gpu_dataflow.h), with speedups and the paper's geomean.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "src/model/hardware.h"
#include "src/model/search.h"
#include "src/model/workload.h"

namespace flatattn::model {

/// attention: L, softmax and A only (what FLAT fuses). layer: plus the layer's FC operators (Q/K/V/O
/// projections, FF1, FF2), identical for every dataflow: the end-to-end view (accelerators only).
enum class Scope : std::uint8_t { attention, layer };

struct SweepOptions {
  std::vector<std::int64_t> ns;               ///< empty: the workload's seq_lens (else 512 ... 64K)
  std::vector<DataflowKind> dataflows;        ///< empty: naive, flex, flat, flash
  std::optional<double> buffer_bytes;         ///< accelerator on-chip capacity override
  std::optional<std::int64_t> batch;          ///< workload batch override
  MapSpace space = MapSpace::full();
  Scope scope = Scope::attention;
  std::string kernels = "default";            ///< GPU: kernel-variant list (planner.h)
};

/// One (N, dataflow) point.
struct SweepRow {
  std::int64_t n = 0;
  DataflowKind dataflow = DataflowKind::flat;
  std::string mapping;        ///< best mapping, one line
  Cost cost{};                ///< attention cost
  double fc_s = 0;            ///< layer scope: FC operators' runtime (0 for attention scope)
  std::int64_t mappings_costed = 0;
  /// Runtime in the sweep's scope (attention + FC for the layer scope).
  [[nodiscard]] double total_s() const { return cost.runtime_s + fc_s; }
};

struct SweepResult {
  Hardware hardware;
  Workload workload;          ///< with the batch override applied
  SweepOptions options;       ///< resolved (ns, dataflows filled in)
  std::vector<SweepRow> rows; ///< n-major, dataflows in options order

  [[nodiscard]] const SweepRow* find(std::int64_t n, DataflowKind d) const;
  /// total_s(base) / total_s(d) at n; NaN when either is missing or infeasible.
  [[nodiscard]] double speedup(std::int64_t n, DataflowKind d, DataflowKind base) const;
  /// Geometric mean of speedup over the sweep's N (points where both are feasible); NaN if none.
  [[nodiscard]] double geomean_speedup(DataflowKind d, DataflowKind base) const;
};

/// Runs the sweep. Throws Error for an empty/invalid N list or the layer scope on a GPU.
SweepResult sweep(const Hardware& hw, const Workload& w, const SweepOptions& options);

/// The default N sweep: 512, 1K, ..., 64K.
std::vector<std::int64_t> default_seq_lens();

/// The FLAT paper's headline metric: geomean over the paper's models (bert, trxl, t5, xlm at batch 64)
/// and N = 512 ... 64K of runtime(flex) / runtime(flat) on `hw` (FLAT Sec. 8.1: 1.75x edge, 1.65x cloud).
double paper_geomean_flat_over_flex(const Hardware& hw, const MapSpace& space = MapSpace::full(),
                                    Scope scope = Scope::attention);

}  // namespace flatattn::model
