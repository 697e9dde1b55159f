// Backward tuner candidates, D = 128 (BwdShape arguments as in tune_bwd_d64.cu). The first is the
// policy table's; 128 x 64 needs 194 KB (H100 only: A100 allows 163 KB).
#include "bench/gpu/tune_bwd_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<BwdCandidate> bwd_candidates_d128() {
  return {bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 2, 1>(), bwd<128, 64, 128, 8, 2, 4, 4, 2, 2, 4, 1, 1>(),
          bwd<128, 64, 128, 8, 4, 2, 4, 2, 4, 2, 2, 1>(), bwd<128, 64, 128, 8, 2, 4, 8, 1, 2, 4, 2, 1>(),
          bwd<128, 128, 64, 8, 4, 2, 4, 2, 4, 2, 2, 1>()};
}
}  // namespace flatattn::cuda::tune
