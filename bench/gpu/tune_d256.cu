// Tuner candidates: d256 (shapes: D, BlockM, BlockN, warps, min CTAs/SM, K/V stages, lazy rescale; FLAT: D, m-tiles, warps, BlockN, cap blocks, min CTAs/SM).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_d256() { return {flash<256, 128, 64, 8, 1, 1, false>(), flash<256, 128, 64, 8, 1, 1, true>(), flash<256, 64, 64, 4, 1, 1, false>()}; }
}  // namespace flatattn::cuda::tune
