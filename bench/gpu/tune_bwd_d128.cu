// Backward tuner candidates, D = 128 (BwdShape arguments as in tune_bwd_d64.cu). The first is the
// policy table's; then dp_split (dP and dS one m-tile at a time), dp_split with the next dO issued after
// the P/dS barrier (split1), the fragment pipeline (pipe), split1 alone, pipe with dO there and Q after
// dV (split2), and the table's again (the run's noise). Earlier rounds (1 stage, sdp 4x2, dkv 8x1,
// 128 x 64) are in bench/results/gpu-bwd-h100.md.
#include "bench/gpu/tune_bwd_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<BwdCandidate> bwd_candidates_d128() {
  return {bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1>(), bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 0, 0, 1>(),
          bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 0, 1, 1>(),
          bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 1, 0>(), bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 0, 1>(),
          bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1, 1, 2>(), bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1>()};
}
}  // namespace flatattn::cuda::tune
