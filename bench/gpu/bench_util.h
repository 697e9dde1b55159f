// Small pieces the GPU benchmark and tuner programs share: `--name value` options and comma lists on the
// command line, JSON string literals for their result files, and the (B, H, N, D) storage they pass as
// (B, N, H, D) views.
#pragma once

#include <cstdio>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "flatattn/flatattn.h"

namespace flatattn::bench {

/// Option name -> what to do with its value.
using OptionTable = std::map<std::string, std::function<void(const std::string&)>>;

/// Applies the `--name value` pairs of argv through `options`. An unknown name or a missing value prints
/// one line naming it and the known options, and returns false (the caller exits with code 2).
inline bool parse_options(int argc, char** argv, const OptionTable& options) {
  for (int i = 1; i < argc; i += 2) {
    const auto opt = options.find(argv[i]);
    if (opt == options.end() || i + 1 == argc) {
      std::string names;
      for (const auto& [name, set] : options) names += (names.empty() ? "" : " ") + name;
      std::fprintf(stderr, "%s: unknown option or no value (options: %s)\n", argv[i], names.c_str());
      return false;
    }
    opt->second(argv[i + 1]);
  }
  return true;
}

/// "64,128" -> {64, 128}.
inline std::vector<long> parse_list(const std::string& s) {
  std::vector<long> v;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) v.push_back(std::stol(x));
  return v;
}

/// s as a JSON string literal (quotes and backslashes escaped, newlines as spaces).
inline std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += (c == '\n' ? ' ' : c);
  }
  return o + "\"";
}

/// A bf16 (B, H, N, D) buffer on cuda:0 as the (B, N, H, D) view the API takes (the peers' layout).
inline TensorView bhnd_view(void* p, long b, long n, long h, long d) {
  return TensorView::strided(p, DType::bf16, {b, n, h, d}, {h * n * d, d, n * d, 1}, Device::cuda(0));
}

}  // namespace flatattn::bench
