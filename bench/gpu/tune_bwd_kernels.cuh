// Builds backward tuner candidates from the library's kernel template with other compile-time shapes
// (the arguments of BwdShape, as in the bwd_tile table of src/cuda/policy/tile_size.h).
#pragma once

#include "bench/gpu/tune_bwd_candidates.h"
#include "src/cuda/launch_bwd.cuh"

namespace flatattn::cuda::tune {

template <int D, int BM, int BN, int W, int SWM, int SWN, int KWN, int KWD, int QWM, int QWD, int ST, int MB>
BwdCandidate bwd() {
  using S = BwdShape<D, BM, BN, W, SWM, SWN, KWN, KWD, QWM, QWD, ST, MB>;
  auto n = [](int x) { return std::to_string(x); };
  return {n(BM) + "x" + n(BN) + " w" + n(W) + " sdp" + n(SWM) + "x" + n(SWN) + " dkv" + n(KWN) + "x" + n(KWD) + " dq" +
              n(QWM) + "x" + n(QWD) + " s" + n(ST) + " mb" + n(MB) + " " +
              n(S::kSmemBytes / 1024) + "KB",
          D, BM, &launch_bwd_shape<Family::sm80, BF16, S, VariantOf<VariantId::plain>>};
}

}  // namespace flatattn::cuda::tune
