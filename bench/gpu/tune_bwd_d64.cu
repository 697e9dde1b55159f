// Backward tuner candidates, D = 64: the policy table's row, twice (the run's noise). Earlier rounds
// (sdp 4x2, 1 stage, dq 2x4, 64 x 128 with 2 CTAs/SM) are in bench/results/gpu-bwd-h100.md; the
// pipe/loads/dp_split candidates went with those options. A candidate is
// bwd<D, BwdTileSize{.block_m = ..., ...}>() (fields as in bwd_tile).
#include "bench/gpu/tune_bwd_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<BwdCandidate> bwd_candidates_d64() {
  constexpr BwdTileSize table = bwd_tile(Family::sm80, 64);
  return {bwd<64, table>(), bwd<64, table>()};
}
}  // namespace flatattn::cuda::tune
