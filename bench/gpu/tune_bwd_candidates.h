// Backward tile candidates of the tuner (bench/gpu/tune_bwd_main.cc): a name and a launcher of the
// library's backward (launch_bwd_shape) with one compile-time shape, bf16, the plain variant, sm80 family.
#pragma once

#include <string>
#include <vector>

#include "src/cuda/launch_api.h"

namespace flatattn::cuda::tune {

struct BwdCandidate {
  std::string name;
  int d = 0;
  int block_m = 0;  ///< sizes the deterministic counters
  LaunchInfo (*launch)(const BwdLaunchArgs&) = nullptr;
};

std::vector<BwdCandidate> bwd_candidates_d64();
std::vector<BwdCandidate> bwd_candidates_d128();

}  // namespace flatattn::cuda::tune
