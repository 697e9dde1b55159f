// Tuner candidates: flat (shapes: D, BlockM, BlockN, warps, min CTAs/SM, K/V stages, lazy rescale; FLAT: D, m-tiles, warps, BlockN, cap blocks, min CTAs/SM).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_flat() { return {flat<64, 2, 4, 64, 2, 2>(), flat<128, 1, 4, 64, 4, 2>(), flat<256, 1, 4, 64, 2, 1>()}; }
}  // namespace flatattn::cuda::tune
