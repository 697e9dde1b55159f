// Builds tuner candidates from the library's kernel templates with other compile-time shapes.
#pragma once

#include <atomic>

#include "bench/gpu/tune_candidates.h"
#include "src/cuda/launch.cuh"

namespace flatattn::cuda::tune {

/// A Flash candidate: head dim D, tile T (a FlashTileSize, as a row of flash_tile).
template <int D, FlashTileSize T>
Candidate flash() {
  using S = FlashShape<D, T>;
  static std::atomic<std::uint64_t> done{0};
  return {"flash", D,
          std::to_string(T.block_m) + "x" + std::to_string(T.block_n) + " w" + std::to_string(T.warps) + " mb" +
              std::to_string(T.min_blocks) + " s" + std::to_string(T.stages) + (T.lazy_rescale ? " lazy" : " eager"),
          [](const LaunchArgs& a) {
            launch_grid(flash_fwd_kernel<Family::sm80, BF16, S, VariantOf<VariantId::plain>>, S::kSmemBytes, S::kThreads, S::kBlockM,
                        a, done);
          }};
}

/// A FLAT candidate: head dim D, tile T (a FlatTileSize, as a row of flat_tile).
template <int D, FlatTileSize T>
Candidate flat() {
  using S = FlatShape<D, T>;
  static std::atomic<std::uint64_t> done{0};
  return {"flat", D, "R" + std::to_string(S::kBlockM) + " cap" + std::to_string(S::kCapN) + " w" + std::to_string(T.warps),
          [](const LaunchArgs& a) {
            launch_grid(flat_fwd_kernel<Family::sm80, BF16, S, VariantOf<VariantId::plain>>, S::kSmemBytes, S::kThreads, S::kBlockM,
                        a, done);
          },
          S::kCapN};
}

}  // namespace flatattn::cuda::tune
