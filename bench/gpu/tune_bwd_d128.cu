// Backward tuner candidates, D = 128 (BwdShape arguments as in tune_bwd_d64.cu). The first is the
// policy table's (fragment pipeline + split loads 2, the candidate under test); then the previous entry
// (no pipeline, all loads at the step's start), the pipeline alone (pipe), the next dO issued after the
// P/dS barrier alone (split1), both, and the previous entry again (the run's noise). split2: dO after
// the P/dS barrier and Q after the dV product. Earlier rounds (1 stage, sdp 4x2, dkv 8x1, 128 x 64) are
// in bench/results/gpu-bwd-h100.md.
#include "bench/gpu/tune_bwd_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<BwdCandidate> bwd_candidates_d128() {
  return {bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 1, 2>(), bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1>(),
          bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 1, 0>(), bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 0, 1>(),
          bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 1, 1>(), bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1>()};
}
}  // namespace flatattn::cuda::tune
