// Accumulator fragments (the m16n8 C layout of mma.sync and of wgmma) -> a 16-bit shared-memory tile:
// the addresses (FragStore) and the stores (store_frags). Used by both backward families for dS, and for
// dK/dV staging.
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/smem_tile.cuh"

namespace flatattn::cuda {

/// Where a warp's accumulator fragments go in a 16-bit tile: rows row0 + 16 mt + lane / 4 (+ 8 for the
/// second half), columns col0 + 8 nt + 2 (lane % 4). Two lane bases (one per row half: the swizzle of
/// 64-byte rows changes every 8 rows) plus frag_at's constant offsets, so the addresses cost no
/// registers per fragment; exact under the col_split_ok rule for the warp's column extent.
template <class Tile>
struct FragStore {
  std::uint32_t base[2];
  FLATATTN_DEVICE FragStore(int row0, int col0, int lane) {
#pragma unroll
    for (int h = 0; h < 2; ++h) base[h] = Tile::offset(row0 + (lane >> 2) + 8 * h, col0) + 4 * (lane & 3);
  }
  /// Byte offset (tile-relative) of the pair (m-tile mt, row half h, n-tile nt).
  [[nodiscard]] FLATATTN_DEVICE std::uint32_t at(int mt, int h, int nt) const {
    return Tile::frag_at(0, base[h], mt * 16, nt * 8);
  }
};

/// x * mul (kMT m-tiles x kNT n-tiles of accumulators) -> 16-bit pairs of the tile at `tile`. One
/// 4-byte store per pair; the 8 rows of a store land in 8 different 16-byte chunks (the swizzle), so no
/// bank conflicts.
template <class E, class Tile, int kMT, int kNT>
FLATATTN_DEVICE void store_frags(const float (&x)[kMT][kNT][4], float mul, unsigned char* tile, const FragStore<Tile>& fs) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        *reinterpret_cast<std::uint32_t*>(tile + fs.at(mt, h, nt)) =
            E::pack(x[mt][nt][2 * h] * mul, x[mt][nt][2 * h + 1] * mul);
}

/// x * mul -> fp32 pairs of a row-major global matrix g (row stride ld elements), at FragStore's positions: rows
/// row0 + 16 mt + lane / 4 (+ 8), columns col0 + 8 nt + 2 (lane % 4). Rows >= nrows and columns >= ncols are not
/// written. Scalar stores: any row stride (the fp32 gradients of a ring's hops; not a hot path).
template <int kMT, int kNT>
FLATATTN_DEVICE void store_frags_f32(const float (&x)[kMT][kNT][4], float mul, float* g, std::int64_t ld, int row0,
                                     int col0, int nrows, int ncols, int lane) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row0 + 16 * mt + (lane >> 2) + 8 * h;
      if (r >= nrows) continue;
      float* row = g + r * ld;
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const int c = col0 + 8 * nt + 2 * (lane & 3);
        if (c < ncols) row[c] = x[mt][nt][2 * h] * mul;
        if (c + 1 < ncols) row[c + 1] = x[mt][nt][2 * h + 1] * mul;
      }
    }
}

}  // namespace flatattn::cuda
