// Moving tiles between global and shared memory (both dataflows, both families).
//   load_tile: a Rows x D tile, rows past `rows_valid` and columns past `d_valid` zero-filled (ragged
//              last tiles, head dims padded up to the kernel's D), 16-byte copies, coalesced per row;
//              load_tile_stepped: the same for loops that load a tile per step.
//   store_tile: a Rows x D tile -> its global rows (the backward's dK, dV).
//   store_out: a warp's normalized output rows, staged through its own rows of the Q tile (which only
//              this warp reads) so that global stores are 16-byte and row-contiguous.
//   store_lse: the LSE of a warp's rows (one lane per row writes it; rows past Nq are skipped).
#pragma once

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/copy.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/smem_tile.cuh"

namespace flatattn::cuda {

/// How Threads threads share the 16-byte chunks of a Rows x D tile: thread t takes chunks t,
/// t + Threads, ... (kIters of them). kFixedColumn: each thread keeps one column and steps kRowStep
/// rows, a multiple of the swizzle period, so its shared offset advances by a constant.
template <class Tile, int D, int Threads>
struct TileChunks {
  static constexpr int kChunksPerRow = D / 8;
  static constexpr int kRows = Tile::kBytes / (D * 2);
  static constexpr int kTotal = kRows * kChunksPerRow;
  static constexpr int kIters = (kTotal + Threads - 1) / Threads;
  static constexpr int kRowStep = Threads / kChunksPerRow;  ///< rows between a thread's consecutive chunks
  static constexpr int kPeriod = Tile::kW == 64 ? 8 : 16;  ///< rows after which the swizzle repeats
  static constexpr bool kFixedColumn = Threads % kChunksPerRow == 0 && kRowStep % kPeriod == 0 && kTotal % Threads == 0;
};

template <class Tile, int D, int kThreads>
FLATATTN_DEVICE void load_tile(std::uint32_t s_base, const std::uint16_t* g, std::int64_t row_stride,
                               int rows_valid, int d_valid, const void* safe, int tid) {
  using C = TileChunks<Tile, D, kThreads>;
  constexpr int kChunksPerRow = C::kChunksPerRow, kTotal = C::kTotal, kIters = C::kIters, kRowStep = C::kRowStep;
  if constexpr (C::kFixedColumn) {
    // Fast path: the thread's column is fixed and each step adds kRowStep rows, which keeps the
    // swizzle: one offset and one pointer, advanced by constants.
    const int r = tid / kChunksPerRow, c = (tid % kChunksPerRow) * 8;
    const std::uint32_t s0 = s_base + Tile::offset(r, c);
    const std::uint16_t* g0 = g + r * row_stride + c;
    const bool col_ok = c < d_valid;
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const bool pred = col_ok && r + i * kRowStep < rows_valid;
      copy_16(s0 + i * kRowStep * Tile::kRowBytes, pred ? static_cast<const void*>(g0 + i * kRowStep * row_stride) : safe,
              pred);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const int idx = tid + i * kThreads;
      if (kTotal % kThreads == 0 || idx < kTotal) {
        const int r = idx / kChunksPerRow, c = (idx % kChunksPerRow) * 8;
        const bool pred = r < rows_valid && c < d_valid;
        copy_16(s_base + Tile::offset(r, c), pred ? static_cast<const void*>(g + r * row_stride + c) : safe, pred);
      }
    }
  }
}

/// load_tile for loops that load a tile per step (the backward's Q and dO): the same copies, with
/// the thread's global address advanced by one 64-bit add per chunk and the out-of-range substitute
/// chosen by a select, so no chunk recomputes row * row_stride (the backward's step once spent ~150
/// instructions per warp on the two tiles' addresses). Falls back to load_tile off the fast shape.
template <class Tile, int D, int kThreads>
FLATATTN_DEVICE void load_tile_stepped(std::uint32_t s_base, const std::uint16_t* g, std::int64_t row_stride,
                                       int rows_valid, int d_valid, const void* safe, int tid) {
  using C = TileChunks<Tile, D, kThreads>;
  constexpr int kChunksPerRow = C::kChunksPerRow, kIters = C::kIters, kRowStep = C::kRowStep;
  if constexpr (C::kFixedColumn) {
    const int r = tid / kChunksPerRow, c = (tid % kChunksPerRow) * 8;
    const std::uint32_t s0 = s_base + Tile::offset(r, c);
    const std::uint16_t* a = g + r * row_stride + c;
    const std::int64_t step = kRowStep * row_stride;
    const int rows_left = c < d_valid ? rows_valid - r : 0;  // chunk i is in range when i * kRowStep < rows_left
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const bool pred = i * kRowStep < rows_left;
      copy_16(s0 + i * kRowStep * Tile::kRowBytes, pred ? static_cast<const void*>(a) : safe, pred);
      a += step;
    }
  } else {
    load_tile<Tile, D, kThreads>(s_base, g, row_stride, rows_valid, d_valid, safe, tid);
  }
}

/// The Rows x D tile at `tile` -> global rows g + r * row_stride for r < rows_valid, columns < d_valid
/// (a multiple of 8). 16-byte loads and stores; consecutive threads write consecutive chunks of a row.
template <class Tile, int D, int kThreads>
FLATATTN_DEVICE void store_tile(const unsigned char* tile, std::uint16_t* g, std::int64_t row_stride, int rows_valid,
                                int d_valid, int tid) {
  using C = TileChunks<Tile, D, kThreads>;
  constexpr int kChunksPerRow = C::kChunksPerRow, kTotal = C::kTotal;
#pragma unroll
  for (int i = 0; i < C::kIters; ++i) {
    const int idx = tid + i * kThreads;
    const int r = idx / kChunksPerRow, c = (idx % kChunksPerRow) * 8;
    if ((kTotal % kThreads == 0 || idx < kTotal) && r < rows_valid && c < d_valid) {
      *reinterpret_cast<uint4*>(g + r * row_stride + c) = *reinterpret_cast<const uint4*>(tile + Tile::offset(r, c));
    }
  }
}

/// o (kMT m-tiles x kDT n-tiles of fp32 fragments) * inv per row -> rows [warp_row0, warp_row0 + 16 kMT)
/// of the tile at `smem` -> global rows (g + row * row_stride), rows < rows_valid, columns < d_valid.
template <class E, class Tile, int kMT, int kDT>
FLATATTN_DEVICE void store_out(const float (&o)[kMT][kDT][4], const float (&inv)[kMT][2], unsigned char* smem,
                               int warp_row0, int lane, std::uint16_t* g, std::int64_t row_stride, int rows_valid,
                               int d_valid) {
  const int gr = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = warp_row0 + mt * 16 + gr + 8 * h;
        *reinterpret_cast<std::uint32_t*>(smem + Tile::offset(r, dt * 8) + 4 * t) =
            E::pack(o[mt][dt][2 * h] * inv[mt][h], o[mt][dt][2 * h + 1] * inv[mt][h]);
      }
    }
  }
  __syncwarp();
  constexpr int kChunksPerRow = kDT;  // 8 elements per chunk = one n-tile
  constexpr int kTotal = kMT * 16 * kChunksPerRow;
  static_assert(kTotal % 32 == 0, "whole warp rounds");
#pragma unroll
  for (int i = 0; i < kTotal / 32; ++i) {
    const int idx = lane + 32 * i;
    const int r = warp_row0 + idx / kChunksPerRow, c = (idx % kChunksPerRow) * 8;
    if (r < rows_valid && c < d_valid) {
      *reinterpret_cast<uint4*>(g + r * row_stride + c) = *reinterpret_cast<const uint4*>(smem + Tile::offset(r, c));
    }
  }
}

/// lse (natural log, per m-tile and row half, as finalize_rows leaves it) -> p.lse at this thread's rows
/// (row: its row of m-tile 0, i.e. lane / 4 of the warp's first row); nothing when p.lse is null.
template <int kMT>
FLATATTN_DEVICE void store_lse(const float (&lse)[kMT][2], const FwdParams& p, const BlockInfo& bi, int row,
                               int lane) {
  if (p.lse == nullptr || (lane & 3) != 0) return;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int i = row + mt * 16 + 8 * h;
      if (i < bi.nq) p.lse[bi.lse + i * p.lse_n] = lse[mt][h];
    }
}

}  // namespace flatattn::cuda
