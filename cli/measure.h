// One measurement: a method (the fused engine with the workload's dataflow, or naive attention) on a
// workload, in its own process. It builds the inputs from the workload's seed, poisons the outputs,
// runs warm-up passes, checks the result against the oracle on sampled rows (cli/sample_check.h) and
// that every output was written, then times `reps` passes and reports the median.
//
// Peak memory is measured, not estimated: the process's peak resident set (ru_maxrss) minus that of
// a baseline process that only builds the same inputs and outputs. What remains is what the method
// itself allocated at its peak (workspace, materialized S/P, thread stacks).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cli/workload.h"

namespace flatattn::cli {

struct MeasureOptions {
  Mode mode = Mode::fwd;
  int warmup = 1;
  int reps = 5;
  int check_rows = 64;  ///< sampled rows judged against the oracle (0: no check)
};

/// method: "fused" (forward/backward with w.dataflow) or "naive" (forward only).
/// Returns {"method", "report": {backend, dataflow, block_m, block_n, kernel}, "threads", "times_ms",
/// "median_ms", "min_ms", "gflops", "check": Verdict, "workspace_bytes" (or null), "maxrss_bytes"},
/// or {"method", "error": {...}} when it could not run (see cli/child.h).
nlohmann::json measure_method(const Workload& w, const std::string& method, const MeasureOptions& m);

/// Peak resident set of a process that only builds the inputs and outputs of (w, mode).
double baseline_rss(const Workload& w, Mode mode);

/// Adds "peak_bytes" = maxrss_bytes - baseline (CPU; null on CUDA, where host RSS says nothing).
void add_peak(nlohmann::json& result, double baseline, DeviceKind device);

/// Bytes of the N x N fp32 score matrix of one head slice: what naive attention materializes per
/// concurrently processed head (times the threads that process heads in parallel).
double naive_slice_bytes(const Workload& w);

/// Why naive attention is not run for (w, mode), or "" when it is: forward only, CPU only, this build
/// has it, and its score matrices (one N x N fp32 slice per thread) fit in 80% of available memory.
std::string naive_skip_reason(const Workload& w, Mode mode);

/// Total physical and currently available memory of this machine (bytes, from /proc/meminfo).
double available_memory_bytes();

}  // namespace flatattn::cli
