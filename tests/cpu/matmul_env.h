// Test helpers for the CPU engine's product paths (src/cpu/amx/amx.h): FLATATTN_CPU_MATMUL set for a scope, and
// the Report kernel-name suffix check the path tests share.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "src/cpu/amx/amx.h"

namespace flatattn::testing {

/// Sets FLATATTN_CPU_MATMUL for the scope (nullptr: unset), restores the previous value after.
class ScopedMatmul {
 public:
  explicit ScopedMatmul(const char* value) {
    if (const char* old = std::getenv(kVar)) old_ = old;
    if (value != nullptr) {
      setenv(kVar, value, 1);
    } else {
      unsetenv(kVar);
    }
  }
  ~ScopedMatmul() {
    if (old_) {
      setenv(kVar, old_->c_str(), 1);
    } else {
      unsetenv(kVar);
    }
  }
  ScopedMatmul(const ScopedMatmul&) = delete;
  ScopedMatmul& operator=(const ScopedMatmul&) = delete;

 private:
  static constexpr const char* kVar = "FLATATTN_CPU_MATMUL";
  std::optional<std::string> old_;
};

/// The bf16 product paths this machine has, by their FLATATTN_CPU_MATMUL names ("amx", "avx512bf16").
inline std::vector<std::string> bf16_paths() {
  std::vector<std::string> v;
  if (cpu::amx_available()) v.push_back("amx");
  if (cpu::avx512bf16_available()) v.push_back("avx512bf16");
  return v;
}

inline bool ends_with(const std::string& k, const std::string& suffix) {
  return k.size() >= suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace flatattn::testing
