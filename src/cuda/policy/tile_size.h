// Tile sizes of every kernel, one annotated constexpr table per arch family (host and device).
// Changing a number here changes speed, never results (every shape is tested against the oracle).
//
// Budgets. sm80 family (A100 .. H100): 64 K registers and 164-228 KB shared memory per SM, at most
// 255 registers per thread. sm75 family (Turing): 64 K registers, 64 KB shared memory per SM and per
// block. Accumulator registers per thread (kMT = 16-row m-tiles per warp = BlockM / (16 Warps)):
// O = kMT * D / 2 floats, S = kMT * BlockN / 2 floats (Flash: one key block) or kMT * CapN / 2 (FLAT:
// the whole row), plus fragments and addresses. Shared memory: (BlockM + 2 BlockN) * D * 2 bytes.
#pragma once

#include <cstdint>

namespace flatattn::cuda {

/// Code path family of an instance: sm80 = SASS for sm_80..sm_90 (mma m16n8k16, cp.async);
/// sm75 = compute_75 PTX (Turing and anything newer through the driver's JIT; f16 only).
enum class Family : std::uint8_t { sm75, sm80 };

constexpr const char* name(Family f) { return f == Family::sm75 ? "sm75" : "sm80"; }

/// Head dims with kernels; other D (multiples of 8 up to 256) are zero-padded up to the next one.
inline constexpr int kHeadDims[] = {32, 64, 96, 128, 192, 256};

struct FlashTileSize {
  int block_m, block_n, warps, min_blocks;  ///< min_blocks: CTAs per SM promised to the register allocator
  [[nodiscard]] constexpr int smem_bytes(int d) const { return (block_m + 2 * block_n) * d * 2; }
};

constexpr FlashTileSize flash_tile(Family f, int d) {
  if (f == Family::sm80) {
    switch (d) {
      case 32: return {128, 128, 4, 2};   // 24 KB smem; S 128 + O 32 regs
      case 64: return {128, 64, 4, 2};    // 32 KB; FA2 takes 128 x 128 non-causal on A100 (S 128 + O 64 regs)
      case 96: return {128, 64, 4, 2};    // 48 KB; S 64 + O 96
      case 128: return {128, 64, 4, 2};   // 64 KB, 2 CTAs/SM by registers (S 64 + O 128), as FA2
      case 192: return {128, 64, 8, 1};   // 96 KB; 16 rows per warp keeps O at 96 regs
      case 256: return {128, 64, 8, 1};   // 128 KB, 1 CTA/SM; O 128 regs, as FA2
      default: return {0, 0, 0, 0};
    }
  }
  switch (d) {  // sm75: <= 64 KB per block
    case 32: return {128, 64, 4, 2};      // 16 KB
    case 64: return {128, 64, 4, 2};      // 32 KB
    case 96: return {64, 64, 4, 2};       // 36 KB
    case 128: return {64, 64, 4, 2};      // 48 KB
    case 192: return {64, 32, 4, 1};      // 48 KB
    case 256: return {64, 32, 4, 1};      // 64 KB
    default: return {0, 0, 0, 0};
  }
}

struct FlatTileSize {
  int m_tiles;     ///< 16-row m-tiles per warp
  int warps;
  int block_n;     ///< keys per K/V block streamed through shared memory
  int cap_blocks;  ///< key blocks held in registers: the row capacity is cap_blocks * block_n
  int min_blocks;
  [[nodiscard]] constexpr int block_m() const { return 16 * m_tiles * warps; }
  [[nodiscard]] constexpr int cap_n() const { return cap_blocks * block_n; }
  [[nodiscard]] constexpr int smem_bytes(int d) const { return (block_m() + 2 * block_n) * d * 2; }
};

constexpr FlatTileSize flat_tile(Family f, int d) {
  if (f == Family::sm80) {
    switch (d) {
      case 32:
      case 64:
      case 96:
      case 128: return {1, 4, 64, 4, 2};  // R = 64 rows, Nk <= 256: S 128 + O <= 64 regs
      case 192:
      case 256: return {1, 4, 64, 2, 1};  // R = 64, Nk <= 128: S 64 + O <= 128 regs
      default: return {0, 0, 0, 0, 0};
    }
  }
  switch (d) {
    case 32:
    case 64:
    case 96:
    case 128: return {1, 4, 64, 2, 2};    // Nk <= 128, <= 48 KB
    case 192:
    case 256: return {1, 4, 32, 4, 1};    // Nk <= 128, <= 64 KB
    default: return {0, 0, 0, 0, 0};
  }
}

}  // namespace flatattn::cuda
