// The shapes issue 21 measures the CPU engine at (the same as bench/cpu/peers_torch_cpu.py's), by name, and the
// comma lists of the CPU benches' flags. Shared by bench_cpu_bf16.cc and bench_cpu_f16_bwd.cc.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace flatattn::bench {

struct CpuShape {
  const char* name;
  std::int64_t b, n, hq, hkv, d;  ///< batch, Nq = Nk, query heads, kv heads, head dim
  bool causal;
};

inline constexpr CpuShape kCpuShapes[] = {
    {"gpt2", 8, 1024, 12, 12, 64, false},   {"gpt2_causal", 8, 1024, 12, 12, 64, true},
    {"llama4k", 1, 4096, 32, 8, 128, true}, {"llama4k_full", 1, 4096, 32, 8, 128, false},
    {"n16k", 1, 16384, 8, 8, 64, true},     {"n16k_full", 1, 16384, 8, 8, 64, false},
};

/// The shape called `name`, or nullptr.
inline const CpuShape* find_cpu_shape(const std::string& name) {
  for (const CpuShape& s : kCpuShapes)
    if (name == s.name) return &s;
  return nullptr;
}

/// "a,b,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(x);
  return out;
}

}  // namespace flatattn::bench
