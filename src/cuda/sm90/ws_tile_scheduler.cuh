// The tile scheduler of the persistent warp-specialized forward (ws_fwd_persistent.cuh; FlashAttention-3, Shah et
// al. 2024, Sec. 3: persistent CTAs that loop over tiles, so a CTA's next Q/K/V loads overlap its last tile's
// epilogue). Its walk -- grid = min(SMs, work units), CTA x takes units x, x + G, ... (a static stride), single tiles
// or, under causal-like masks, pairs of query blocks n_m - 1 - j then j of one head -- is src/core/tile_walk.h's
// TileWalk, plain C++ (host and device), so that the cost model (src/model/gpu_kernel.cc) predicts the persistent
// kernel by walking exactly the tiles each CTA runs; that header says why pairs.
#pragma once

#include "src/core/tile_walk.h"

namespace flatattn::cuda::sm90 {

using WsTileScheduler = ::flatattn::TileWalk;

}  // namespace flatattn::cuda::sm90
