// Builds backward tuner candidates from the library's kernel template with other compile-time shapes
// (a BwdTileSize, as a row of the bwd_tile table of src/cuda/policy/tile_size.h).
#pragma once

#include "bench/gpu/tune_bwd_candidates.h"
#include "src/cuda/launch_bwd.cuh"

namespace flatattn::cuda::tune {

template <int D, BwdTileSize T>
BwdCandidate bwd() {
  using S = BwdShape<D, T>;
  auto n = [](int x) { return std::to_string(x); };
  return {n(T.block_m) + "x" + n(T.block_n) + " w" + n(T.warps) + " sdp" + n(T.sdp_wm) + "x" + n(T.sdp_wn) + " dkv" +
              n(T.dkv_wn) + "x" + n(T.dkv_wd) + " dq" + n(T.dq_wm) + "x" + n(T.dq_wd) + " s" + n(T.stages) + " mb" +
              n(T.min_blocks) + " " + n(S::kSmemBytes / 1024) + "KB",
          D, T.block_m, &launch_bwd_shape<Family::sm80, BF16, S, VariantOf<VariantId::plain>>};
}

}  // namespace flatattn::cuda::tune
