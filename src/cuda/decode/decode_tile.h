// The decode kernel's tile sizes and shared memory per head dim (decode_kernel.cuh), plain C++ so the host
// (forward_kvcache.cc, the planner) reads the same numbers.
#pragma once

namespace flatattn::cuda {

/// Tile sizes and shared memory of the decode kernel for head dim D (also read by the host launcher).
template <int D>
struct DecodeTile {
  static constexpr int kWarps = 4, kThreads = 128, kBN = 64, kRows = 16;
  /// Enough bytes in flight per SM to keep HBM busy (2 CTAs per SM on sm90 at D <= 128).
  static constexpr int kStages = D <= 64 ? 4 : (D <= 128 ? 3 : 2);
  static constexpr int kTileBytes = kBN * D * 2;        ///< one K (or V) tile
  static constexpr int kStageBytes = 2 * kTileBytes;    ///< K and V
  static constexpr int kRedBytes = kWarps * kRows * D * 4;  ///< the warps' fp32 outputs at the merge
  static constexpr int kSmem = kStages * kStageBytes > kRedBytes ? kStages * kStageBytes : kRedBytes;
  static_assert(kRows * D * 2 <= kSmem, "the Q tile is staged in the pipeline's memory");
};

}  // namespace flatattn::cuda
