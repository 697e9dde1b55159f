// Tuner candidates: d256 (shapes: D, BlockM, BlockN, warps, min CTAs/SM, K/V stages; FLAT: D, m-tiles, warps, BlockN, cap blocks, min CTAs/SM).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_d256() { return {flash<256, 128, 64, 8, 1, 1>(), flash<256, 128, 32, 8, 1, 2>(), flash<256, 64, 64, 4, 1, 2>(), flash<256, 64, 64, 4, 1, 1>()}; }
}  // namespace flatattn::cuda::tune
