// Shared printing of measurement results (run and bench): one table row per method, check lines,
// and the fused-vs-naive comparison.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/table.h"
#include "cli/workload.h"

namespace flatattn::cli {

/// Table header and row of one measurement result (cli/measure.h); sgemm_gflops > 0 adds "% SGEMM".
std::vector<std::string> result_header(bool with_sgemm);
std::vector<std::string> result_row(const nlohmann::json& r, double sgemm_gflops);

/// "PASS max_err=... <= bound=... rel=... (64 sampled rows)" or "FAIL ..." or "skipped: why".
std::string check_line(const nlohmann::json& r);

/// True when r ran and its check (if any) passed, or was skipped / declined as unsupported.
bool result_ok(const nlohmann::json& r);

/// The rule, one line, printed under every table of checks.
extern const char* const kRuleLine;

}  // namespace flatattn::cli
