// Measurements run in forked child processes: each method gets a fresh address space, so its peak
// resident memory (getrusage ru_maxrss) is its own, a method that runs out of memory cannot take the
// CLI down, and OpenMP / CUDA start only in children (the parent stays fork-safe).
#pragma once

#include <functional>

#include <nlohmann/json.hpp>

namespace flatattn::cli {

/// Runs fn in a forked child and returns the JSON it produced, with "maxrss_bytes" (the child's peak
/// resident set, from getrusage(RUSAGE_SELF) at its end) added.
/// A flatattn::Error thrown in the child comes back as {"error": {kind, argument, value, limit, fix,
/// message}}; another exception as {"error": {"kind": "runtime", "message": ...}}; a child killed by a
/// signal (e.g. the OOM killer) as {"error": {"kind": "killed", "message": "killed by signal 9 ..."}}.
nlohmann::json run_in_child(const std::function<nlohmann::json()>& fn);

/// Rethrows the error of a child's result (as flatattn::Error, or std::runtime_error) if it has one.
void rethrow_child_error(const nlohmann::json& result);

/// One line describing a child's error ("unsupported: flatattn: dataflow = flat: ..."), "" if none.
std::string child_error_line(const nlohmann::json& result);

}  // namespace flatattn::cli
