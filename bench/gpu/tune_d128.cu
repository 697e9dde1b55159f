// Tuner candidates: d128 (shapes: D and a FlashTileSize or FlatTileSize, fields as in src/cuda/policy/tile_size.h).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_d128() {
  return {flash<128, FlashTileSize{.block_m = 128, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true}>(),
          flash<128, FlashTileSize{.block_m = 128, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = false}>(),
          flash<128, FlashTileSize{.block_m = 128, .block_n = 32, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true}>()};
}
}  // namespace flatattn::cuda::tune
