// Tuner candidates: d64 (shapes: D and a FlashTileSize or FlatTileSize, fields as in src/cuda/policy/tile_size.h).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_d64() {
  return {flash<64, FlashTileSize{.block_m = 128, .block_n = 128, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true}>(),
          flash<64, FlashTileSize{.block_m = 128, .block_n = 128, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = false}>()};
}
}  // namespace flatattn::cuda::tune
