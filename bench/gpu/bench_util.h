// Small pieces the GPU benchmark and tuner programs share: comma lists on the command line, JSON string
// literals for their result files, and the (B, H, N, D) storage they pass as (B, N, H, D) views.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "flatattn/flatattn.h"

namespace flatattn::bench {

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
