// Backward tuner candidates, D = 128: the policy table's row, twice (the run's noise). Earlier rounds
// (1 stage, sdp 4x2, dkv 8x1, 128 x 64) are in bench/results/gpu-bwd-h100.md; the pipe/loads/dp_split
// candidates went with those options. A candidate is bwd<D, BwdTileSize{.block_m = ..., ...}>().
#include "bench/gpu/tune_bwd_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<BwdCandidate> bwd_candidates_d128() {
  constexpr BwdTileSize table = bwd_tile(Family::sm80, 128);
  return {bwd<128, table>(), bwd<128, table>()};
}
}  // namespace flatattn::cuda::tune
