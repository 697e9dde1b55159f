// Tuner candidates: d128 (shapes: D, BlockM, BlockN, warps, min CTAs/SM, K/V stages, lazy rescale; FLAT: D, m-tiles, warps, BlockN, cap blocks, min CTAs/SM).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_d128() { return {flash<128, 128, 64, 4, 2, 1, true>(), flash<128, 128, 64, 4, 2, 1, false>(), flash<128, 128, 32, 4, 2, 1, true>()}; }
}  // namespace flatattn::cuda::tune
