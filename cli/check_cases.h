// The sweep of `flatattn check`: every feature of the checks' feature table (src/check/features.h) x
// dtype, forward with each dataflow and backward, plus the CLI's own lengths and head dims. A new feature
// is one entry in src/check/features.cc. Or, with the workload flags (shape, band, --density, --block,
// --global), one workload of the user's own: its forward with each dataflow and its backward, per dtype.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "flatattn/attention.h"
#include "cli/workload.h"
#include "src/check/case.h"

namespace flatattn::cli {

struct CheckCase {
  std::string feature;  ///< what the case exercises: the feature's label ("GQA 6:2, D = 80, causal", ...)
  check::Case c;        ///< shape, dtype, options (the dataflow set for forward cases), layout
  bool backward = false;
  /// The sparse mask tensors that replace make_case's (a user's sparse workload: sparse_lists(w), the mask
  /// `flatattn run --seed` of the same flags uses, the same for every case); null: make_case's own.
  std::shared_ptr<const check::CaseTensors> mask;
};

/// "B2 Nq128 Nk128 Hq4/4 D64", or "varlen[37/37,0/9] Hq4/2 D64".
std::string shape_str(const check::Case& c);

/// The sweep for `dtypes`. quick: the features marked quick (~10 s on 2 cores in Release).
std::vector<CheckCase> check_sweep(const std::vector<DType>& dtypes, bool quick);

/// The cases of one workload w (its shape, band and sparse mask; w.dtype is ignored): per dtype, the forward
/// with Flash, with FLAT, and the backward. The feature label is "workload" plus w's sparse flags.
std::vector<CheckCase> workload_cases(const Workload& w, const std::vector<DType>& dtypes);

}  // namespace flatattn::cli
