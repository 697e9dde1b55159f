// The decode kernel's tile sizes and shared memory per head dim (decode_kernel.cuh), plain C++ so the host
// (forward_kvcache.cc, the planner) reads the same numbers.
#pragma once

#include <algorithm>

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

/// The decode kernel's shared memory per CTA at a built head dim d (64, 128; anything else: 256's).
constexpr int decode_smem_bytes(int d) {
  return d == 64 ? DecodeTile<64>::kSmem : d == 128 ? DecodeTile<128>::kSmem : DecodeTile<256>::kSmem;
}

/// Resident decode CTAs per SM at head dim d with smem_optin bytes of opt-in shared memory per CTA (within 1 KB of
/// the SM's): shared memory, clamped to 1..3 by registers (<= 168 x 128 threads: 3 per SM). The planner's input
/// (forward_kvcache.cc) and the decode cost model's (src/model/decode.h).
constexpr int decode_ctas_per_sm(int d, int smem_optin) { return std::clamp(smem_optin / decode_smem_bytes(d), 1, 3); }

}  // namespace flatattn::cuda
