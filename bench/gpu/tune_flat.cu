// Tuner candidates: flat (shapes: D and a FlashTileSize or FlatTileSize, fields as in src/cuda/policy/tile_size.h).
#include "bench/gpu/tune_kernels.cuh"

namespace flatattn::cuda::tune {
std::vector<Candidate> candidates_flat() {
  return {flat<64, FlatTileSize{.m_tiles = 2, .warps = 4, .block_n = 64, .cap_blocks = 2, .min_blocks = 2}>(),
          flat<128, FlatTileSize{.m_tiles = 1, .warps = 4, .block_n = 64, .cap_blocks = 4, .min_blocks = 2}>(),
          flat<256, FlatTileSize{.m_tiles = 1, .warps = 4, .block_n = 64, .cap_blocks = 2, .min_blocks = 1}>()};
}
}  // namespace flatattn::cuda::tune
