// Tile sizes of every kernel, one annotated constexpr table per arch family (host and device).
// Changing a number here changes speed, never results (every shape is tested against the oracle).
//
// Families (one kernel source, src/cuda/common/arch.cuh):
//   sm80: SASS for sm_80 / sm_87 / sm_90 (A100, Orin, H100/H200): <= 163 KB (A100) .. 227 KB shared
//         memory per block, 64 K registers per SM.
//   sm86: SASS for sm_86 / sm_89 (RTX 30xx/40xx, A10, L4, L40): <= 99 KB shared memory per block.
//   sm75: compute_75 PTX (Turing; any later GPU through the driver's JIT), f16: <= 64 KB per block.
//   sm90: SASS for sm_90a only (H100/H200): the Flash forward and backward on warpgroup MMA
//         (src/cuda/sm90/); forward: one warpgroup per 64 query rows (warps = 4 * BlockM / 64);
//         backward: one warpgroup per 64 keys. <= 227 KB shared memory per block. FLAT and the other
//         head dims stay on the sm80 family on these GPUs.
// Registers per thread (kMT = 16-row m-tiles per warp = BlockM / (16 Warps)): O = kMT * D / 2 floats,
// S = kMT * BlockN / 2 (Flash: one key block) or kMT * CapN / 2 (FLAT: the whole row), plus fragments
// and addresses, at most 255. Shared memory: Flash (BlockM + 2 Stages BlockN) * D * 2 bytes,
// FLAT (R + 2 BlockN) * D * 2 bytes.
// Measurements behind the sm80 numbers: bench/results/gpu-tune-h100.md (H100, bf16, B*N = 16k).
// Every row names every field (C++20 designated initializers, in declaration order); `{}` (all zero)
// is "no kernel for this head dim". The kernels take a row itself as one template argument
// (FlashShape<D, flash_tile(F, D)>, src/cuda/launch.cuh), so the structs must stay structural types:
// every member public, not mutable, of a structural type (int, bool); member functions are fine.
#pragma once

#include <cstdint>

namespace flatattn::cuda {

enum class Family : std::uint8_t { sm75, sm80, sm86, sm90 };
inline constexpr int kFamilyCount = 4;

constexpr const char* name(Family f) {
  switch (f) {
    case Family::sm75: return "sm75";
    case Family::sm80: return "sm80";
    case Family::sm86: return "sm86";
    case Family::sm90: return "sm90";
  }
  return "?";
}

/// The least opt-in shared memory per block of a family's GPUs (bytes; CUDA C Programming Guide,
/// "Technical Specifications per Compute Capability"): the tables below must fit it. sm75: T4/RTX 20;
/// sm80: A100 (163 KB); sm86: RTX 30/A10/L4 (sm_86/89: 99 KB); sm90: H100/H200 (227 KB).
constexpr int smem_optin_bytes(Family f) {
  switch (f) {
    case Family::sm75: return 64 * 1024;
    case Family::sm80: return 163 * 1024;
    case Family::sm86: return 99 * 1024;
    case Family::sm90: return 227 * 1024;
  }
  return 0;
}

/// Head dims with kernels; other D (multiples of 8 up to 256) are zero-padded up to the next one.
inline constexpr int kHeadDims[] = {32, 64, 96, 128, 192, 256};

struct FlashTileSize {
  int block_m, block_n, warps;
  int min_blocks;  ///< CTAs per SM promised to the register allocator (__launch_bounds__)
  int stages;         ///< K/V buffers: 1 = FA2's single-buffered pipeline, 2 = double-buffered
  bool lazy_rescale;  ///< rescale O only when a row max grows by > 2^8 (common/softmax.cuh)
  [[nodiscard]] constexpr int smem_bytes(int d) const { return (block_m + 2 * stages * block_n) * d * 2; }
};
// sm90 rows: block_m = 64 * warpgroups, warps = 4 * warpgroups, stages = K/V ring depth (>= 2); the
// kernel adds 1 KB to smem_bytes to align its tiles to the 1024-byte swizzle atom.

constexpr FlashTileSize flash_tile(Family f, int d) {
  // H100 measurements (bench/results/gpu-tune-h100.md): stages 2 gained nothing over 1 at D = 64/128
  // (1.00x, 0.96-1.00x); lazy rescaling gained 1-4% at D = 128 and lost 7-9% at D = 256 (8 warps,
  // 16 rows each), so the wide head dims keep the eager FA2 rescale.
  switch (f) {
    case Family::sm80:
      switch (d) {
        case 32:  // 24 KB
          return {.block_m = 128, .block_n = 128, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 64:  // 48 KB; 128x128 beat 128x64 by 3-11%
          return {.block_m = 128, .block_n = 128, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 96:  // 48 KB
          return {.block_m = 128, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 128:  // 64 KB, 2 CTAs/SM; beat 128x128/8w, 64x64, 128x32
          return {.block_m = 128, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 192:  // 96 KB; 16 rows per warp keeps O at 96 regs
          return {.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 1, .stages = 1, .lazy_rescale = false};
        case 256:  // 128 KB (A100 allows 163); beat 64x64 and 128x32
          return {.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 1, .stages = 1, .lazy_rescale = false};
        default: return {};
      }
    case Family::sm86:  // 99 KB per block, 100 KB per SM
      switch (d) {
        case 32:  // 24 KB
          return {.block_m = 128, .block_n = 128, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 64:  // 48 KB
          return {.block_m = 128, .block_n = 128, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 96:  // 48 KB
          return {.block_m = 128, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 128:  // 48 KB: two CTAs fit in 100 KB
          return {.block_m = 128, .block_n = 32, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 192:  // 72 KB
          return {.block_m = 64, .block_n = 64, .warps = 4, .min_blocks = 1, .stages = 1, .lazy_rescale = false};
        case 256:  // 96 KB
          return {.block_m = 64, .block_n = 64, .warps = 4, .min_blocks = 1, .stages = 1, .lazy_rescale = false};
        default: return {};
      }
    case Family::sm90:  // wgmma; S = BlockN / 2, P = BlockN / 4 and O = D / 2 registers per thread
      // H100 (bench/results/gpu-fwd-sm90-h100.md, tune_fwd --only sm90, bf16, TFLOP/s at N = 1k/4k/16k,
      // non-causal | causal): D = 64: 192x128 s3 274/337/366 | 174/284/344 beat s4 (-1..-4%) and
      // 128x128 s4 at N >= 4k (280/308/319 | 209/283/321); D = 128: 128x64 s4 390/444/447 | 292/396/465
      // beat 128x128 s3 (371/425/439 | 283/381/444), 192x64 s3/s4 and the eager rescale.
      // D = 64, second run (commit 22f16ed, H100, N = 1k/2k/4k): 128x64 with two CTAs per SM (118 regs, no
      // spills) 351/374/388 | 259/311/348 beat 192x128 s3 (269/320/337 | 174/247/285), 64x64 mb3 s4
      // (310/330/337 | 251/292/317), 64x128 mb2 and 128x128 (mb2 spills); s4 ties s3.
      switch (d) {
        case 64:  // 64 KB; 2 warpgroups, 2 CTAs/SM
          return {.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 2, .stages = 3, .lazy_rescale = true};
        case 128:  // 160 KB; 2 warpgroups
          return {.block_m = 128, .block_n = 64, .warps = 8, .min_blocks = 1, .stages = 4, .lazy_rescale = true};
        default: return {};  // other D: the sm80 family
      }
    case Family::sm75:  // <= 64 KB per block, no cp.async
      switch (d) {
        case 32:  // 16 KB
          return {.block_m = 128, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 64:  // 32 KB
          return {.block_m = 128, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 96:  // 36 KB
          return {.block_m = 64, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 128:  // 48 KB
          return {.block_m = 64, .block_n = 64, .warps = 4, .min_blocks = 2, .stages = 1, .lazy_rescale = true};
        case 192:  // 48 KB
          return {.block_m = 64, .block_n = 32, .warps = 4, .min_blocks = 1, .stages = 1, .lazy_rescale = false};
        case 256:  // 64 KB
          return {.block_m = 64, .block_n = 32, .warps = 4, .min_blocks = 1, .stages = 1, .lazy_rescale = false};
        default: return {};
      }
  }
  return {};
}

/// The Flash forward tile of an instance: flash_tile, except that the bias variant's sm90 D = 128 ring has 3
/// stages instead of 4, so that its staged bias (Stages - 1 slots of 128 x 64 f32, src/cuda/common/bias_tile.cuh)
/// fits 227 KB: 32 + 3 * 32 + 1 + 2 * 32 = 193 KB.
constexpr FlashTileSize flash_tile_for(Family f, int d, bool bias) {
  FlashTileSize t = flash_tile(f, d);
  if (bias && f == Family::sm90 && d == 128) t.stages = 3;
  return t;
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
  if (f == Family::sm75) {
    switch (d) {
      case 32:
      case 64:
      case 96:
      case 128:  // R = 64, Nk <= 128, <= 48 KB
        return {.m_tiles = 1, .warps = 4, .block_n = 64, .cap_blocks = 2, .min_blocks = 2};
      case 192:
      case 256:  // R = 64, Nk <= 128, <= 64 KB
        return {.m_tiles = 1, .warps = 4, .block_n = 32, .cap_blocks = 4, .min_blocks = 1};
      default: return {};
    }
  }
  switch (d) {  // sm80 and sm86 (all <= 96 KB)
    case 32:
    case 64:  // R = 128, Nk <= 128: S 128 + O <= 64 regs (R64/cap256 was 25% slower)
      return {.m_tiles = 2, .warps = 4, .block_n = 64, .cap_blocks = 2, .min_blocks = 2};
    case 96:
    case 128:  // R = 64, Nk <= 256: S 128 + O <= 64 regs
      return {.m_tiles = 1, .warps = 4, .block_n = 64, .cap_blocks = 4, .min_blocks = 2};
    case 192:
    case 256:  // R = 64, Nk <= 128: S 64 + O <= 128 regs
      return {.m_tiles = 1, .warps = 4, .block_n = 64, .cap_blocks = 2, .min_blocks = 1};
    default: return {};
  }
}

/// Backward (FlashAttention-2 Alg. 2, one CTA per key block): tiles and how the warps split each of
/// its three products. S = Q K^T and dP = dO V^T (BlockM x BlockN) on sdp_wm x sdp_wn warps; dV += P^T dO
/// and dK += dS^T Q (BlockN x D) on dkv_wn x dkv_wd warps; dQ = dS K (BlockM x D) on dq_wm x dq_wd
/// warps. A product may use fewer warps than the CTA has (the rest skip it). Each warp's column
/// extent must be a power of two below the swizzle width or a multiple of it (sm80/bwd_kernel.cuh).
/// Registers per thread: dK + dV accumulators BlockN * D * 2 / (32 * warps used) floats, S and dP
/// BlockM * BlockN / (32 * sdp warps) floats each. Shared memory: Q and dO (stages buffers each),
/// K, V, P and dS tiles and the per-row values (BwdShape::kSmemBytes, checked against
/// smem_optin_bytes when an entry is instantiated).
struct BwdTileSize {
  int block_m, block_n, warps;
  int sdp_wm, sdp_wn;  ///< S/dP warps: rows x keys
  int dkv_wn, dkv_wd;  ///< dK/dV warps: keys x head dim
  int dq_wm, dq_wd;    ///< dQ warps: rows x head dim
  int stages;          ///< Q/dO buffers: 2 = the next block's loads overlap the whole step
  int min_blocks;
};

constexpr BwdTileSize bwd_tile(Family f, int d) {
  // sm80: FlashAttention-2's H100/A100 choices as the starting point (64 x 128 tiles, 8 warps at
  // D = 128; 128 x 128 at D <= 64), every table entry <= 163 KB (A100's opt-in limit). H100, N = 8k,
  // bf16, tune_bwd (bench/results/gpu-bwd-h100.md, after the kernel's bookkeeping fix), ms dense /
  // causal:
  //   D = 128, 64 x 128: sdp 2x4 dkv 4x2 dq 2x4 s2 (the entry) 9.93 / 5.31; 1 stage 10.79 / 5.67;
  //     sdp 4x2 dq 4x2 11.36 / 6.10; dkv 8x1 10.54 / 5.63; 128 x 64 (194 KB) 13.61 / 6.89.
  //   D = 64, 128 x 128: sdp 2x4 (the entry) 5.71 / 3.05; sdp 4x2 5.83 / 3.09 (and 52 bytes of spills
  //     in the loop instead of 8); 1 stage 6.11 / 3.16; dq 2x4 5.85 / 3.13; 64 x 128 with 2 CTAs/SM
  //     (97 KB, registers capped at 128) 7.39 / 4.10.
  // Other head dims: FA2's shapes, unmeasured.
  // SASS (sm_90) of D = 128: the dP product issues 48 of its 64 MMAs within 8 instructions of the
  // ldmatrix they read (ptxas has no registers left to load earlier); tools/sass_mma_distance.py
  // measures this (bench/results/bwd-sass-sm90.md). Options built against it (bd60f5e: the fragment
  // pipeline `pipe`, split Q/dO `loads`, one-m-tile `dp_split`) were 0 in every row and never timed
  // on a GPU, so they were removed; the SASS notes there still say what each changed.
  switch (f) {
    case Family::sm80:
      switch (d) {
        case 32:  // 112 KB
          return {.block_m = 128, .block_n = 128, .warps = 8, .sdp_wm = 4, .sdp_wn = 2, .dkv_wn = 8, .dkv_wd = 1,
                  .dq_wm = 4, .dq_wd = 2, .stages = 2, .min_blocks = 1};
        case 64:  // 160 KB
          return {.block_m = 128, .block_n = 128, .warps = 8, .sdp_wm = 2, .sdp_wn = 4, .dkv_wn = 4, .dkv_wd = 2,
                  .dq_wm = 4, .dq_wd = 2, .stages = 2, .min_blocks = 1};
        case 96:  // 128 KB
          return {.block_m = 64, .block_n = 128, .warps = 8, .sdp_wm = 2, .sdp_wn = 4, .dkv_wn = 8, .dkv_wd = 1,
                  .dq_wm = 2, .dq_wd = 3, .stages = 2, .min_blocks = 1};
        case 128:  // 160 KB
          return {.block_m = 64, .block_n = 128, .warps = 8, .sdp_wm = 2, .sdp_wn = 4, .dkv_wn = 4, .dkv_wd = 2,
                  .dq_wm = 2, .dq_wd = 4, .stages = 2, .min_blocks = 1};
        case 192:  // 160 KB; 6 warps: 64-wide d splits
          return {.block_m = 64, .block_n = 64, .warps = 6, .sdp_wm = 2, .sdp_wn = 2, .dkv_wn = 2, .dkv_wd = 3,
                  .dq_wm = 2, .dq_wd = 3, .stages = 2, .min_blocks = 1};
        case 256:  // 144 KB (2 stages: 208 KB > A100)
          return {.block_m = 64, .block_n = 64, .warps = 8, .sdp_wm = 2, .sdp_wn = 4, .dkv_wn = 2, .dkv_wd = 4,
                  .dq_wm = 2, .dq_wd = 4, .stages = 1, .min_blocks = 1};
        default: return {};
      }
    case Family::sm86:  // <= 99 KB per block
      switch (d) {
        case 32:  // 64 KB
          return {.block_m = 64, .block_n = 128, .warps = 8, .sdp_wm = 2, .sdp_wn = 4, .dkv_wn = 8, .dkv_wd = 1,
                  .dq_wm = 4, .dq_wd = 2, .stages = 2, .min_blocks = 1};
        case 64:  // 96 KB
          return {.block_m = 64, .block_n = 128, .warps = 8, .sdp_wm = 2, .sdp_wn = 4, .dkv_wn = 4, .dkv_wd = 2,
                  .dq_wm = 4, .dq_wd = 2, .stages = 2, .min_blocks = 1};
        case 96:  // 88 KB
          return {.block_m = 64, .block_n = 64, .warps = 8, .sdp_wm = 2, .sdp_wn = 4, .dkv_wn = 4, .dkv_wd = 1,
                  .dq_wm = 2, .dq_wd = 3, .stages = 2, .min_blocks = 1};
        case 128:  // 80 KB
          return {.block_m = 64, .block_n = 64, .warps = 8, .sdp_wm = 2, .sdp_wn = 4, .dkv_wn = 4, .dkv_wd = 2,
                  .dq_wm = 2, .dq_wd = 4, .stages = 1, .min_blocks = 1};
        case 192:  // 80 KB
          return {.block_m = 32, .block_n = 64, .warps = 6, .sdp_wm = 2, .sdp_wn = 2, .dkv_wn = 2, .dkv_wd = 3,
                  .dq_wm = 2, .dq_wd = 3, .stages = 1, .min_blocks = 1};
        case 256:  // 68 KB
          return {.block_m = 32, .block_n = 32, .warps = 8, .sdp_wm = 2, .sdp_wn = 2, .dkv_wn = 2, .dkv_wd = 4,
                  .dq_wm = 2, .dq_wd = 4, .stages = 1, .min_blocks = 1};
        default: return {};
      }
    case Family::sm90:  // wgmma (sm90/bwd_kernel.cuh): 2 warpgroups x 64 keys, 64-row steps, Q/dO x 2;
      // S^T, dP^T, dK, dV per warpgroup (sdp/dkv fields for the record); dq_wd = warpgroups that own dQ
      // columns (2: head-dim halves; 1: both compute all columns, warpgroup 0 adds them). D = 64 takes 2
      // since 97fa569: 32-column halves, the second an MN-major operand starting 64 bytes into a 128-byte
      // swizzle row; the 18 backward GPU tests pass on it and the backward is 3.5-6% faster than with 1
      // (H100, bench/results/gpu-bwd-h100.md). H100, N = 8k, bf16 (39db209): 1.13-1.15x the sm80 rows at
      // D = 64, 1.37-1.42x at D = 128; other shapes of these rows not tuned.
      switch (d) {
        case 64:  // 73 KB; dK + dV 64 regs/thread
          return {.block_m = 64, .block_n = 128, .warps = 8, .sdp_wm = 1, .sdp_wn = 2, .dkv_wn = 2, .dkv_wd = 1,
                  .dq_wm = 1, .dq_wd = 2, .stages = 2, .min_blocks = 1};
        case 128:  // 145 KB; dK + dV 128 regs/thread
          return {.block_m = 64, .block_n = 128, .warps = 8, .sdp_wm = 1, .sdp_wn = 2, .dkv_wn = 2, .dkv_wd = 1,
                  .dq_wm = 1, .dq_wd = 2, .stages = 2, .min_blocks = 1};
        default: return {};  // other D: the sm80 family
      }
    case Family::sm75:  // <= 64 KB per block, f16
      switch (d) {
        case 32:  // 32 KB
          return {.block_m = 64, .block_n = 64, .warps = 4, .sdp_wm = 2, .sdp_wn = 2, .dkv_wn = 4, .dkv_wd = 1,
                  .dq_wm = 2, .dq_wd = 2, .stages = 1, .min_blocks = 1};
        case 64:  // 48 KB
          return {.block_m = 64, .block_n = 64, .warps = 4, .sdp_wm = 2, .sdp_wn = 2, .dkv_wn = 2, .dkv_wd = 2,
                  .dq_wm = 2, .dq_wd = 2, .stages = 1, .min_blocks = 1};
        case 96:  // 44 KB
          return {.block_m = 32, .block_n = 64, .warps = 4, .sdp_wm = 2, .sdp_wn = 2, .dkv_wn = 4, .dkv_wd = 1,
                  .dq_wm = 1, .dq_wd = 3, .stages = 1, .min_blocks = 1};
        case 128:  // 56 KB
          return {.block_m = 32, .block_n = 64, .warps = 4, .sdp_wm = 2, .sdp_wn = 2, .dkv_wn = 2, .dkv_wd = 2,
                  .dq_wm = 2, .dq_wd = 2, .stages = 1, .min_blocks = 1};
        case 192:  // 38 KB
          return {.block_m = 16, .block_n = 32, .warps = 4, .sdp_wm = 1, .sdp_wn = 2, .dkv_wn = 1, .dkv_wd = 3,
                  .dq_wm = 1, .dq_wd = 3, .stages = 1, .min_blocks = 1};
        case 256:  // 50 KB
          return {.block_m = 16, .block_n = 32, .warps = 4, .sdp_wm = 1, .sdp_wn = 2, .dkv_wn = 2, .dkv_wd = 2,
                  .dq_wm = 1, .dq_wd = 4, .stages = 1, .min_blocks = 1};
        default: return {};
      }
  }
  return {};
}

}  // namespace flatattn::cuda
