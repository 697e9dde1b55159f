// The two warp-level products of attention on tensor cores, shared by the Flash and FLAT kernels:
//   S = Q K^T : A = the warp's Q rows (ldmatrix), B = the key block (ldmatrix: K rows are B's columns)
//   O += P V  : A = P straight from the S accumulators (the C layout of S is the A layout of P, so P
//               never leaves registers: FlashAttention-2 Sec. 3.3), B = V rows (ldmatrix.trans)
// (the score hooks between them: common/score.cuh).
//
// Lane address patterns (r_lane, c_lane) of the x4 loads:
//   A and V.trans: (lane % 16, 8 * (lane / 16))          tiles: rows 0-7|8-15 x cols 0-7, then cols 8-15
//   K (B):         (lane % 8 + 8 * (lane / 16), 8 * (lane / 8 % 2))   tiles: keys 0-7 x k 0-7|8-15,
//                                                                     then keys 8-15 x k 0-7|8-15
#pragma once

#include <cstdint>

#include "src/cuda/common/ldmatrix.cuh"
#include "src/cuda/common/mma.cuh"
#include "src/cuda/common/params.h"

namespace flatattn::cuda {

FLATATTN_DEVICE int a_row(int lane) { return lane & 15; }
FLATATTN_DEVICE int a_col(int lane) { return (lane >> 4) * 8; }
FLATATTN_DEVICE int b_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
FLATATTN_DEVICE int b_col(int lane) { return ((lane >> 3) & 1) * 8; }

/// s = Q_warp K_block^T. sq, sk: shared addresses of the tiles; aq: lane base of the warp's Q rows
/// (A pattern), bk: lane base in the K tile (B pattern), both tile-relative.
template <class E, class TQ, class TK, int kMT, int kNT, int kD>
FLATATTN_DEVICE void gemm_qk(float (&s)[kMT][kNT][4], std::uint32_t sq, std::uint32_t aq, std::uint32_t sk,
                             std::uint32_t bk) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    std::uint32_t a[kMT][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) ldmatrix_x4(a[mt], TQ::frag_at(sq, aq, mt * 16, kk * 16));
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      std::uint32_t b[4];
      ldmatrix_x4(b, TK::frag_at(sk, bk, np * 16, kk * 16));
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        mma_16816<E>(s[mt][2 * np], a[mt], b[0], b[1]);
        mma_16816<E>(s[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

/// Probabilities (fp32 accumulators of one key block) -> packed A fragments of the P V product.
template <class E, int kMT, int kNT>
FLATATTN_DEVICE void pack_p(const float (&s)[kMT][kNT][4], std::uint32_t (&p)[kMT][kNT / 2][4]) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int kk = 0; kk < kNT / 2; ++kk) {
      p[mt][kk][0] = E::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
      p[mt][kk][1] = E::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
      p[mt][kk][2] = E::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
      p[mt][kk][3] = E::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
    }
}

/// o += P V_block. sv: shared address of the V tile; av: tile-relative lane base (A pattern, read
/// transposed).
template <class E, class TV, int kMT, int kNT, int kDT>
FLATATTN_DEVICE void gemm_pv(float (&o)[kMT][kDT][4], const std::uint32_t (&p)[kMT][kNT / 2][4], std::uint32_t sv,
                             std::uint32_t av) {
#pragma unroll
  for (int kk = 0; kk < kNT / 2; ++kk) {
#pragma unroll
    for (int dp = 0; dp < kDT / 2; ++dp) {
      std::uint32_t b[4];
      ldmatrix_x4_trans(b, TV::frag_at(sv, av, kk * 16, dp * 16));
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        mma_16816<E>(o[mt][2 * dp], p[mt][kk], b[0], b[1]);
        mma_16816<E>(o[mt][2 * dp + 1], p[mt][kk], b[2], b[3]);
      }
    }
  }
}

}  // namespace flatattn::cuda
