// Builds tuner candidates from the library's kernel templates with other compile-time shapes.
#pragma once

#include <atomic>

#include "bench/gpu/tune_candidates.h"
#include "src/cuda/launch.cuh"

namespace flatattn::cuda::tune {

template <int D, int BM, int BN, int W, int MB, int ST, bool LZ>
Candidate flash() {
  using S = FlashShape<D, BM, BN, W, MB, ST, LZ>;
  static std::atomic<std::uint64_t> done{0};
  return {"flash", D, std::to_string(BM) + "x" + std::to_string(BN) + " w" + std::to_string(W) + " mb" + std::to_string(MB) + " s" + std::to_string(ST) + (LZ ? " lazy" : " eager"),
          [](const LaunchArgs& a) {
            launch_grid(flash_fwd_kernel<Family::sm80, BF16, S, VariantOf<VariantId::plain>>, S::kSmemBytes, S::kThreads, S::kBlockM,
                        a, done);
          }};
}

template <int D, int MT, int W, int BN, int CAP, int MB>
Candidate flat() {
  using S = FlatShape<D, MT, W, BN, CAP, MB>;
  static std::atomic<std::uint64_t> done{0};
  return {"flat", D, "R" + std::to_string(S::kBlockM) + " cap" + std::to_string(S::kCapN) + " w" + std::to_string(W),
          [](const LaunchArgs& a) {
            launch_grid(flat_fwd_kernel<Family::sm80, BF16, S, VariantOf<VariantId::plain>>, S::kSmemBytes, S::kThreads, S::kBlockM,
                        a, done);
          },
          S::kCapN};
}

}  // namespace flatattn::cuda::tune
