// Tuner candidates of the sm90 family (wgmma Flash forward, sm_90a; src/cuda/sm90/): shapes D, BlockM,
// BlockN, warps (4 per 64 rows), min CTAs/SM, K/V stages, lazy rescale. Compiled for sm_90a only.
#include <atomic>
#include <string>

#include "bench/gpu/tune_candidates.h"
#include "src/cuda/launch.cuh"

namespace flatattn::cuda::tune {

template <int D, int BM, int BN, int W, int MB, int ST, bool LZ>
Candidate sm90c() {
  using S = sm90::Shape<D, BM, BN, W, MB, ST, LZ>;
  static std::atomic<std::uint64_t> done{0};
  return {"sm90", D,
          std::to_string(BM) + "x" + std::to_string(BN) + " w" + std::to_string(W) + " mb" + std::to_string(MB) + " s" +
              std::to_string(ST) + (LZ ? " lazy" : " eager"),
          [](const LaunchArgs& a) {
            launch_grid(sm90::flash_fwd_kernel<BF16, S, VariantOf<VariantId::plain>>, S::kSmemBytes, S::kThreads, S::kBlockM, a,
                        done);
          }};
}

std::vector<Candidate> candidates_sm90() {
  return {sm90c<64, 192, 128, 12, 1, 4, true>(),  sm90c<64, 192, 128, 12, 1, 3, true>(),
          sm90c<64, 128, 128, 8, 1, 4, true>(),   sm90c<64, 128, 128, 8, 1, 3, true>(),
          sm90c<128, 128, 128, 8, 1, 3, true>(),  sm90c<128, 128, 128, 8, 1, 3, false>(),
          sm90c<128, 192, 64, 12, 1, 4, true>(),  sm90c<128, 192, 64, 12, 1, 3, true>(),
          sm90c<128, 128, 64, 8, 1, 4, true>(),
          // D = 64 at short N: two or more CTAs per SM (one CTA's softmax and loads overlap another's wgmmas)
          sm90c<64, 128, 64, 8, 2, 3, true>(),    sm90c<64, 128, 64, 8, 2, 4, true>(),
          sm90c<64, 128, 128, 8, 2, 3, true>(),   sm90c<64, 64, 128, 4, 2, 3, true>(),
          sm90c<64, 64, 64, 4, 3, 4, true>()};
}

}  // namespace flatattn::cuda::tune
