// The warp-level pieces the backward adds to common/warp_gemm.cuh (FlashAttention-2, Alg. 2):
//   gemm_smem_a: c += A B with A read from shared memory, either as stored ([row][k], ldmatrix) or
//                transposed ([k][row], ldmatrix.trans: P^T and dS^T from the P/dS tiles), and B read
//                transposed from a [k][n] tile (ldmatrix.trans, as V in gemm_pv): dV += P^T dO,
//                dK += dS^T Q, dQ = dS K.
// (store_frags and FragStore, which put accumulators into 16-bit tiles, are in common/frag_store.cuh.)
//
// Lane bases (tile-relative, built with the tile's offset()):
//   A as stored:     offset(row0 + a_row(lane), a_col(lane))       fragments at (row0 + 16 mt, 16 kk)
//   A transposed:    offset(b_row(lane), row0 + b_col(lane))       fragments at (16 kk, row0 + 16 mt)
//   B transposed:    offset(a_row(lane), col0 + a_col(lane))       fragments at (16 kk, col0 + 16 np)
// frag_at() moves a base by constant multiples of 16 with one XOR on the swizzled chunk bits, which
// is exact when the warp's first column (row0 or col0 above) is a multiple of a power of two at
// least as wide as the warp's extent and the extent stays within one swizzle block, or when the
// extent is a whole number of swizzle blocks: col_split_ok() says which.
#pragma once

#include <cstdint>

#include "src/cuda/common/ldmatrix.cuh"
#include "src/cuda/common/mma.cuh"
#include "src/cuda/common/frag_store.cuh"
#include "src/cuda/common/smem_tile.cuh"
#include "src/cuda/common/warp_gemm.cuh"

namespace flatattn::cuda {

/// Whether warps may start every `extent` columns of Tile and address their fragments with frag_at
/// (loads move in 16 columns, stores in 8).
template <class Tile>
constexpr bool col_split_ok(int extent) {
  const bool pow2 = extent > 0 && (extent & (extent - 1)) == 0;
  return extent % 16 == 0 && (extent % Tile::kW == 0 || (pow2 && extent < Tile::kW));
}

/// The A fragments of k-slice kk for kMT m-tiles from the tile at `sa`: as stored (ldmatrix, fragments
/// at (16 mt, 16 kk)) or transposed (kATrans: ldmatrix.trans, fragments at (16 kk, 16 mt)).
template <class TA, bool kATrans, int kMT>
FLATATTN_DEVICE void load_a_frags(std::uint32_t (&a)[kMT][4], std::uint32_t sa, std::uint32_t a_base, int kk) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
    if constexpr (kATrans) {
      ldmatrix_x4_trans(a[mt], TA::frag_at(sa, a_base, kk * 16, mt * 16));
    } else {
      ldmatrix_x4(a[mt], TA::frag_at(sa, a_base, mt * 16, kk * 16));
    }
  }
}

/// c[kMT][kNT] += A (16 kMT x kK) * B (kK x 8 kNT), A from the tile at `sa` (transposed when kATrans),
/// B from the [k][n] tile at `sb`. a_base, b_base: lane bases as in the header comment.
template <class E, class TA, class TB, bool kATrans, int kMT, int kNT, int kK>
FLATATTN_DEVICE void gemm_smem_a(float (&c)[kMT][kNT][4], std::uint32_t sa, std::uint32_t a_base, std::uint32_t sb,
                                 std::uint32_t b_base) {
  static_assert(kNT % 2 == 0 && kK % 16 == 0, "B fragments come in pairs of n-tiles, k in steps of 16");
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) {
    std::uint32_t a[kMT][4];
    load_a_frags<TA, kATrans, kMT>(a, sa, a_base, kk);
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      std::uint32_t b[4];
      ldmatrix_x4_trans(b, TB::frag_at(sb, b_base, kk * 16, np * 16));
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        mma_16816<E>(c[mt][2 * np], a[mt], b[0], b[1]);
        mma_16816<E>(c[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

}  // namespace flatattn::cuda
