// Flag validation shared by the subcommands: every bad value becomes one line that names the flag and
// the allowed values, and exit code 2 (cli/main.cc).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "flatattn/error.h"

namespace flatattn::cli {

/// A bad combination of flags found after parsing (e.g. --hkv not dividing --hq). what() is the
/// one-line message: "--hkv: 5 does not divide --hq = 12; allowed: a divisor of --hq (1, 2, 3, 4, 6, 12)".
class UsageError : public std::runtime_error {
 public:
  UsageError(const std::string& flag, const std::string& problem, const std::string& allowed)
      : std::runtime_error(flag + ": " + problem + "; allowed: " + allowed) {}
  /// A message already in that form (e.g. one passed back from a measurement process).
  explicit UsageError(const std::string& line) : std::runtime_error(line) {}
};

/// Thrown by a subcommand whose work ran but failed (a check that did not pass): main exits with `code`
/// after the subcommand has printed its own report.
struct CommandFailed {
  int code = 1;
};

/// Validators run on the raw string (before conversion), so "abc" and "-3" get the same message
/// shape: "'<value>' is not allowed; allowed: <allowed>". CLI11 prefixes the flag name.
CLI::Validator int_at_least(std::int64_t lo);
CLI::Validator int_in(std::int64_t lo, std::int64_t hi);
CLI::Validator float_at_least(double lo, bool inclusive = true);
CLI::Validator one_of(std::vector<std::string> names);

/// The message of a library error as a CLI line, with the API argument mapped back to its flag
/// where one exists ("q" head dim -> --d, "k" Hkv -> --hkv, "window.left" -> --window, ...).
std::string usage_line(const Error& e);

/// Parses "a,b,c" lists of positive integers (bench --n): throws UsageError naming `flag`.
std::vector<std::int64_t> parse_int_list(const std::string& flag, const std::string& text, std::int64_t lo);

}  // namespace flatattn::cli
