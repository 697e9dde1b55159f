// A tile-size candidate of the tuner: a label and a launcher (plain C++ side of bench/gpu/tune_*.cu).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "src/cuda/launch_api.h"

namespace flatattn::cuda::tune {

using Launch = std::function<void(const LaunchArgs&)>;

struct Candidate {
  std::string dataflow;
  int d;
  std::string shape;
  Launch launch;
  int cap_n = 1 << 30;  ///< FLAT: longest row
};

/// Candidates per group, each group in its own translation unit (they compile in parallel).
std::vector<Candidate> candidates_d64();
std::vector<Candidate> candidates_d128();
std::vector<Candidate> candidates_d256();
std::vector<Candidate> candidates_flat();
std::vector<Candidate> candidates_sm90();  ///< bench/gpu/tune_sm90.cu (sm_90a), when FLATATTN_TUNE_SM90

}  // namespace flatattn::cuda::tune
