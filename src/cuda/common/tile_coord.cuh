// Where a forward CTA works: the 1-D grid mapped to (query block, query head, sequence), shared by every
// forward kernel (sm80/sm86/sm75 Flash, sm90 Flash, FLAT).
#pragma once

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

/// Maps the 1-D grid to (query block, head, sequence); the heaviest query blocks (last rows, most
/// keys under causal) are launched first.
struct TileCoord {
  int m_block, h, b;
  FLATATTN_DEVICE TileCoord(int n_m_blocks, int hq) : TileCoord(static_cast<int>(blockIdx.x), n_m_blocks, hq) {}
  /// The tile of linear index `linear` in the same order (persistent kernels walk several: sm90/ws_tile_scheduler.cuh).
  FLATATTN_DEVICE TileCoord(int linear, int n_m_blocks, int hq) {
    const int hb = linear / n_m_blocks;
    m_block = n_m_blocks - 1 - (linear - hb * n_m_blocks);
    h = hb % hq;
    b = hb / hq;
  }
};

}  // namespace flatattn::cuda
