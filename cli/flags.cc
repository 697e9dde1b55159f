#include "cli/flags.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

namespace flatattn::cli {

namespace {

bool parse_int(const std::string& s, std::int64_t& v) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  return ec == std::errc() && p == end && !s.empty();
}

std::string not_allowed(const std::string& value, const std::string& allowed) {
  return fmt::format("'{}' is not allowed; allowed: {}", value, allowed);
}

}  // namespace

CLI::Validator int_at_least(std::int64_t lo) {
  const std::string allowed = fmt::format("integers >= {}", lo);
  return CLI::Validator(
      [lo, allowed](std::string& s) {
        std::int64_t v = 0;
        return parse_int(s, v) && v >= lo ? std::string() : not_allowed(s, allowed);
      },
      fmt::format("INT>={}", lo));
}

CLI::Validator int_in(std::int64_t lo, std::int64_t hi) {
  const std::string allowed = fmt::format("integers {} .. {}", lo, hi);
  return CLI::Validator(
      [lo, hi, allowed](std::string& s) {
        std::int64_t v = 0;
        return parse_int(s, v) && v >= lo && v <= hi ? std::string() : not_allowed(s, allowed);
      },
      fmt::format("INT in [{}, {}]", lo, hi));
}

CLI::Validator float_at_least(double lo, bool inclusive) {
  const std::string allowed = fmt::format("finite numbers {} {}", inclusive ? ">=" : ">", lo);
  return CLI::Validator(
      [lo, inclusive, allowed](std::string& s) {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        const bool ok = !s.empty() && end == s.c_str() + s.size() && std::isfinite(v) && (inclusive ? v >= lo : v > lo);
        return ok ? std::string() : not_allowed(s, allowed);
      },
      fmt::format("FLOAT{}{}", inclusive ? ">=" : ">", lo));
}

CLI::Validator one_of(std::vector<std::string> names) {
  const std::string allowed = fmt::format("{}", fmt::join(names, ", "));
  return CLI::Validator(
      [names, allowed](std::string& s) {
        for (const auto& n : names)
          if (s == n) return std::string();
        return not_allowed(s, allowed);
      },
      fmt::format("{{{}}}", fmt::join(names, ",")));
}

std::string usage_line(const Error& e) {
  const std::string& a = e.argument();
  const std::string& v = e.value();
  std::string flag;
  if (a == "q" && (v.find("head dim") != std::string::npos || v.find("D =") != std::string::npos)) flag = "--d";
  else if (a == "q" && v.find("Hq") != std::string::npos) flag = "--hq";
  else if ((a == "q" || a == "k" || a == "v") && v.find("dtype") != std::string::npos) flag = "--dtype";
  else if (a == "k" && v.find("Hkv") != std::string::npos) flag = "--hkv";
  else if (a == "window.left" || a == "window.right" || a == "window") flag = "--window";
  else if (a == "softcap") flag = "--softcap";
  else if (a == "dropout_p") flag = "--dropout";
  else if (a == "softmax_scale") flag = "--scale";
  else if (a == "num_threads") flag = "--threads";
  else if (a == "q.device" || a == "device") flag = "--device";
  else if (a == "dataflow") flag = "--dataflow";
  else if (a == "fp32_matmul") flag = "--fp32-matmul";
  else if (a == "block_sparse.block_q" || a == "block_sparse.block_kv") flag = "--block";  // e.g. not a CUDA tile multiple
  else if (a.rfind("local_global.", 0) == 0) flag = "--global";
  if (flag.empty()) {
    std::string m = e.what();
    const std::string prefix = "flatattn: ";
    return m.rfind(prefix, 0) == 0 ? m.substr(prefix.size()) : m;
  }
  std::string m = flag + ": " + (v.empty() ? a : v);
  if (!e.limit().empty()) m += ": " + e.limit();
  if (!e.fix().empty()) m += "; fix: " + e.fix();
  return m;
}

std::vector<std::int64_t> parse_int_list(const std::string& flag, const std::string& text, std::int64_t lo) {
  std::vector<std::int64_t> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::int64_t v = 0;
    if (!parse_int(item, v) || v < lo)
      throw UsageError(flag, fmt::format("'{}' is not allowed", item), fmt::format("a comma list of integers >= {}", lo));
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace flatattn::cli
