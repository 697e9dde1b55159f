// The feature table: every attention feature the checks cover, by name, with the case that stresses it.
// The CPU tests (tests/cpu: forward and backward per dtype x feature), the CUDA tests (tests/cuda: per
// feature x kernel family) and `flatattn check` (cli/check_cases.cc) all iterate features(); a new
// feature is one entry in features.cc. Cases are oracle-sized (N ~ 100: the fp64 oracle is O(N^2 D)).
#pragma once

#include <cstdint>
#include <ostream>
#include <span>
#include <string_view>

#include "src/check/case.h"

namespace flatattn::check {

/// One feature: a name, the row label of `flatattn check`, the base shape of its case, and what the
/// feature sets on a case (options, heads, layout, sequence lengths, input scale).
struct Feature {
  const char* name;   ///< identifier, used in test names: "causal_tl"
  const char* label;  ///< human label of `flatattn check` rows: "causal top-left, Nq > Nk"
  std::int64_t batch, nq, nk, hq, hkv, d;  ///< the case's shape before apply (varlen: apply sets lengths)
  void (*apply)(Case&);  ///< sets the feature on a case; leaves everything else as it is
  bool quick;            ///< part of `flatattn check --quick`
};

/// The feature's name (test runners print parameters with it).
inline std::ostream& operator<<(std::ostream& os, const Feature& f) { return os << f.name; }

/// Every feature, in table order.
std::span<const Feature> features();

/// The feature called `name`; throws std::invalid_argument for an unknown name.
const Feature& feature(std::string_view name);

/// The case of feature f in dtype dt: its shape, then f.apply, with return_lse on.
Case feature_case(const Feature& f, DType dt);

/// `base` with the feature's apply (its shape not taken): a feature on another suite's shape.
Case with_feature(Case base, std::string_view name);

}  // namespace flatattn::check
