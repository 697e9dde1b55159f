// The sweep of `flatattn check`: every feature of the checks' feature table (src/check/features.h) x
// dtype, forward with each dataflow and backward, plus the CLI's own lengths and head dims. A new feature
// is one entry in src/check/features.cc.
#pragma once

#include <string>
#include <vector>

#include "flatattn/attention.h"
#include "src/check/case.h"

namespace flatattn::cli {

struct CheckCase {
  std::string feature;  ///< what the case exercises: the feature's label ("GQA 6:2, D = 80, causal", ...)
  check::Case c;        ///< shape, dtype, options (the dataflow set for forward cases), layout
  bool backward = false;
};

/// "B2 Nq128 Nk128 Hq4/4 D64", or "varlen[37/37,0/9] Hq4/2 D64".
std::string shape_str(const check::Case& c);

/// The sweep for `dtypes`. quick: the features marked quick (~10 s on 2 cores in Release).
std::vector<CheckCase> check_sweep(const std::vector<DType>& dtypes, bool quick);

}  // namespace flatattn::cli
