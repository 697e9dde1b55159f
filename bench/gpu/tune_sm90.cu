// Tuner candidates of the sm90 family (wgmma Flash forward, sm_90a; src/cuda/sm90/): shapes: D and a
// FlashTileSize (block_m = 64 per warpgroup, warps = 4 per warpgroup, K/V stages >= 3). Compiled for sm_90a only.
#include <atomic>
#include <string>

#include "bench/gpu/tune_candidates.h"
#include "src/cuda/launch.cuh"

namespace flatattn::cuda::tune {

template <int D, FlashTileSize T>
Candidate sm90c() {
  using S = sm90::Shape<D, T>;
  static std::atomic<std::uint64_t> done{0};
  return {"sm90", D,
          std::to_string(T.block_m) + "x" + std::to_string(T.block_n) + " w" + std::to_string(T.warps) + " mb" +
              std::to_string(T.min_blocks) + " s" + std::to_string(T.stages) + (T.lazy_rescale ? " lazy" : " eager"),
          [](const LaunchArgs& a) {
            launch_grid(sm90::flash_fwd_kernel<BF16, S, VariantOf<VariantId::plain>>, S::kSmemBytes, S::kThreads, S::kBlockM, a,
                        done);
          }};
}

std::vector<Candidate> candidates_sm90() {
  return {sm90c<64, FlashTileSize{.block_m = 192, .block_n = 128, .warps = 12, .min_blocks = 1, .stages = 4, .lazy_rescale = true}>(),
          sm90c<64, FlashTileSize{.block_m = 192, .block_n = 128, .warps = 12, .min_blocks = 1, .stages = 3, .lazy_rescale = true}>(),
          sm90c<64, FlashTileSize{.block_m = 128, .block_n = 128, .warps = 8, .min_blocks = 1, .stages = 4, .lazy_rescale = true}>(),
          sm90c<64, FlashTileSize{.block_m = 128, .block_n = 128, .warps = 8, .min_blocks = 1, .stages = 3, .lazy_rescale = true}>(),
          sm90c<128, FlashTileSize{.block_m = 128, .block_n = 128, .warps = 8, .min_blocks = 1, .stages = 3, .lazy_rescale = true}>(),
          sm90c<128, FlashTileSize{.block_m = 128, .block_n = 128, .warps = 8, .min_blocks = 1, .stages = 3, .lazy_rescale = false}>(),
          sm90c<128, FlashTileSize{.block_m = 192, .block_n = 64, .warps = 12, .min_blocks = 1, .stages = 4, .lazy_rescale = true}>(),
          sm90c<128, FlashTileSize{.block_m = 192, .block_n = 64, .warps = 12, .min_blocks = 1, .stages = 3, .lazy_rescale = true}>(),
          sm90c<128, FlashTileSize{.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 1, .stages = 4, .lazy_rescale = true}>(),
          // D = 64 at short N: two or more CTAs per SM (one CTA's softmax and loads overlap another's wgmmas)
          sm90c<64, FlashTileSize{.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 2, .stages = 3, .lazy_rescale = true}>(),
          sm90c<64, FlashTileSize{.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 2, .stages = 4, .lazy_rescale = true}>(),
          sm90c<64, FlashTileSize{.block_m = 128, .block_n = 128, .warps = 8, .min_blocks = 2, .stages = 3, .lazy_rescale = true}>(),
          sm90c<64, FlashTileSize{.block_m = 64, .block_n = 128, .warps = 4, .min_blocks = 2, .stages = 3, .lazy_rescale = true}>(),
          sm90c<64, FlashTileSize{.block_m = 64, .block_n = 64, .warps = 4, .min_blocks = 3, .stages = 4, .lazy_rescale = true}>()};
}

}  // namespace flatattn::cuda::tune
