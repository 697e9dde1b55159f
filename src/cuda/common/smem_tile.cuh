// Swizzled shared-memory tile of Rows x D 16-bit elements, addressed in 16-byte chunks (8 elements).
//
// Layout: D is split into column blocks of W elements (W = 64, or 32 when 64 does not divide D);
// each block stores its Rows rows contiguously (row r at r * 2W bytes), blocks one after another.
// Within every 1024-byte stretch the 16-byte chunk index (address bits 4-6) is XORed with bits 7-9,
// so the 8 row addresses of one ldmatrix tile, and 8 consecutive rows written by cp.async, fall in
// 8 different bank groups: no bank conflicts for 128-byte rows (W = 64) nor 64-byte rows (W = 32).
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

template <int Rows, int D>
struct SmemTile {
  static constexpr int kW = (D % 64 == 0) ? 64 : 32;
  static_assert(D % kW == 0, "head dim must be a multiple of 32");
  static_assert((Rows * kW * 2) % 1024 == 0, "a column block must span whole 1024-byte swizzle periods");
  static constexpr int kRowBytes = kW * 2;
  static constexpr int kBlockBytes = Rows * kRowBytes;
  static constexpr int kBytes = Rows * D * 2;

  /// Byte offset of the chunk holding elements (r, c .. c+7); c is a multiple of 8.
  __host__ __device__ __forceinline__ static constexpr std::uint32_t offset(int r, int c) {
    const std::uint32_t lin = static_cast<std::uint32_t>(r * kRowBytes + (c % kW) * 2);
    return static_cast<std::uint32_t>((c / kW) * kBlockBytes) + (lin ^ (((lin >> 7) & 7u) << 4));
  }

  /// Byte offset of element (r, e), any e: the swizzle moves whole chunks, so e's place inside its chunk stays.
  __host__ __device__ __forceinline__ static constexpr std::uint32_t elem_offset(int r, int e) {
    return offset(r, e & ~7) + static_cast<std::uint32_t>(e & 7) * 2;
  }

  /// Fragment addressing: a lane's base is offset(r_lane, c_lane) with r_lane < 16 and c_lane in
  /// {0, 8} (relative to the tile, whose own address need not be aligned); the offset of
  /// (r_lane + dr, c_lane + dc) for dr, dc multiples of 16 is the base with its chunk bits XORed by a
  /// constant plus a constant (no carry reaches the swizzled bits). dr and dc are compile-time
  /// constants after unrolling, so this folds to one LOP3 and an add.
  __device__ __forceinline__ static std::uint32_t frag_at(std::uint32_t tile, std::uint32_t lane_base, int dr,
                                                          int dc) {
    return tile + (lane_base ^ static_cast<std::uint32_t>(((dc % kW) / 8) << 4)) +
           static_cast<std::uint32_t>(dr * kRowBytes + (dc / kW) * kBlockBytes);
  }
};

}  // namespace flatattn::cuda
