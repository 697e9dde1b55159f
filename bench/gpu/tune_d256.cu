// Tuner candidates: d256 (shapes: D and a FlashTileSize or FlatTileSize, fields as in src/cuda/policy/tile_size.h).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_d256() {
  return {flash<256, FlashTileSize{.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 1, .stages = 1, .lazy_rescale = false}>(),
          flash<256, FlashTileSize{.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 1, .stages = 1, .lazy_rescale = true}>(),
          flash<256, FlashTileSize{.block_m = 64, .block_n = 64, .warps = 4, .min_blocks = 1, .stages = 1, .lazy_rescale = false}>()};
}
}  // namespace flatattn::cuda::tune
