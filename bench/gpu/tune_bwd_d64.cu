// Backward tuner candidates, D = 64 (BwdShape: D, BlockM, BlockN, warps, S/dP warps MxN, dK/dV warps
// NxD, dQ warps MxD, Q/dO stages, min CTAs/SM). The first is the policy table's.
#include "bench/gpu/tune_bwd_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<BwdCandidate> bwd_candidates_d64() {
  return {bwd<64, 128, 128, 8, 4, 2, 4, 2, 4, 2, 2, 1>(), bwd<64, 128, 128, 8, 4, 2, 4, 2, 4, 2, 1, 1>(),
          bwd<64, 128, 128, 8, 2, 4, 4, 2, 4, 2, 2, 1>(), bwd<64, 128, 128, 8, 4, 2, 4, 2, 2, 4, 2, 1>(),
          bwd<64, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 2>()};
}
}  // namespace flatattn::cuda::tune
