// Tuner candidates: d64 (shapes: D, BlockM, BlockN, warps, min CTAs/SM, K/V stages, lazy rescale; FLAT: D, m-tiles, warps, BlockN, cap blocks, min CTAs/SM).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_d64() { return {flash<64, 128, 128, 4, 2, 1, true>(), flash<64, 128, 128, 4, 2, 1, false>()}; }
}  // namespace flatattn::cuda::tune
