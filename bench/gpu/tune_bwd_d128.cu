// Backward tuner candidates, D = 128 (BwdShape arguments as in tune_bwd_d64.cu). The policy table's,
// twice (the run's noise). Earlier rounds (1 stage, sdp 4x2, dkv 8x1, 128 x 64) are in
// bench/results/gpu-bwd-h100.md; the pipe/loads/dp_split candidates went with those options.
#include "bench/gpu/tune_bwd_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<BwdCandidate> bwd_candidates_d128() {
  return {bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1>(), bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1>()};
}
}  // namespace flatattn::cuda::tune
