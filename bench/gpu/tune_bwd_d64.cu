// Backward tuner candidates, D = 64 (BwdShape: D, BlockM, BlockN, warps, S/dP warps MxN, dK/dV warps
// NxD, dQ warps MxD, Q/dO stages, min CTAs/SM). The policy table's, twice (the run's noise). Earlier
// rounds (sdp 4x2, 1 stage, dq 2x4, 64 x 128 with 2 CTAs/SM) are in bench/results/gpu-bwd-h100.md;
// the pipe/loads/dp_split candidates went with those options.
#include "bench/gpu/tune_bwd_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<BwdCandidate> bwd_candidates_d64() {
  return {bwd<64, 128, 128, 8, 2, 4, 4, 2, 4, 2, 2, 1>(), bwd<64, 128, 128, 8, 2, 4, 4, 2, 4, 2, 2, 1>()};
}
}  // namespace flatattn::cuda::tune
