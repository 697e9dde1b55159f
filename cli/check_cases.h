// The sweep of `flatattn check`: shapes x dtypes x features (GQA, windows, softcap, Nq != Nk, odd N,
// varlen, non-contiguous strides, fully masked rows, large logits), forward with each dataflow and
// backward. One generator, one table: a new feature is one line in check_cases.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flatattn/attention.h"

namespace flatattn::cli {

struct CheckCase {
  std::string feature;  ///< what the case exercises ("GQA 8:2", "window (32,0)", ...)
  std::int64_t batch = 1, nq = 1, nk = 1, hq = 1, hkv = 1, d = 64;
  DType dtype = DType::f32;
  Options options{};
  std::vector<std::int32_t> seqlens_q, seqlens_k;  ///< non-empty: varlen (batch = their size)
  bool strided = false;  ///< q/k/v/out/grads stored (B, H, N, D) with padding
  double sd = 1.0;       ///< of q and k (large values: large logits)
  bool backward = false;
  [[nodiscard]] bool varlen() const { return !seqlens_q.empty(); }
  [[nodiscard]] std::string shape() const;  ///< "B2 Nq128 Nk128 Hq4/4 D64"
};

/// The sweep for `dtypes`. quick: a subset that runs in about a second.
std::vector<CheckCase> check_sweep(const std::vector<DType>& dtypes, bool quick);

}  // namespace flatattn::cli
