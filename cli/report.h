// Shared printing of measurement results (run and bench): one table row per method, check lines,
// and the fused-vs-naive comparison.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/table.h"
#include "cli/workload.h"

namespace flatattn::cli {

/// A GEMM rate a result's GFLOP/s is divided by, as a table column: e.g. {"/SGEMM", 180.0}.
struct Ceiling {
  std::string column;
  double gflops = 0;
};

/// Table header and row of one measurement result (cli/measure.h), with one column per ceiling.
std::vector<std::string> result_header(const std::vector<Ceiling>& ceilings);
std::vector<std::string> result_row(const nlohmann::json& r, const std::vector<Ceiling>& ceilings);

/// "PASS max_err=... <= bound=... rel=... (64 sampled rows)" or "FAIL ..." or "skipped: why".
std::string check_line(const nlohmann::json& r);

/// True when r ran and its check (if any) passed, or was skipped / declined as unsupported.
bool result_ok(const nlohmann::json& r);

/// The rule, one line, printed under every table of checks.
extern const char* const kRuleLine;

}  // namespace flatattn::cli
