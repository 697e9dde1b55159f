// Writing sweep results: CSV (one row per N x dataflow, the columns tools/plot_model.py reads) and
// JSON (the same rows plus the hardware, workload, options and geomean speedups).
#pragma once

#include <filesystem>
#include <string>

#include "src/model/sweep.h"

namespace flatattn::model {

/// CSV header + rows. Columns: hardware, workload, scope, mapspace, n, dataflow, feasible, mapping,
/// flops, offchip_bytes, onchip_bytes, buffer_bytes, spilled_bytes, compute_s, sfu_s, memory_s,
/// onchip_s, attention_s, fc_s, runtime_s, ideal_s, utilization, energy_j, speedup_vs_flex,
/// speedup_vs_naive. runtime_s is in the sweep's scope (attention_s + fc_s); utilization is the attention's
/// (ideal_s / attention_s); speedups compare runtime_s.
std::string to_csv(const SweepResult& r);
/// JSON document {"hardware", "workload", "options", "rows": [...], "geomean": {...}}.
std::string to_json(const SweepResult& r);

/// Writes `text` to `path` (whole file); throws Error naming the path when it cannot.
void write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace flatattn::model
