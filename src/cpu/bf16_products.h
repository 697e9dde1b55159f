// The backward's bf16 products (src/cpu/backward.cc) on AMX tiles or AVX512-BF16: one object that hides which
// unit runs them and how the operands are cut into bf16 pieces (SplitPolicy, src/cpu/amx/amx.h), so the passes of
// the backward name each product once (S, dP, dV, dK, dQ) whatever the path.
#pragma once

#include <cstdint>

#include "src/cpu/amx/amx.h"
#include "src/cpu/pack.h"

namespace flatattn::cpu {

/// Piece products of s (1 for one piece).
inline int products_of(const SplitPolicy& s) {
  int a[9], b[9];
  return s.pieces == 1 ? 1 : split_pairs(s, a, b);
}

/// Inner dim of the qk operands (Q / dO tiles, K / V panels) for head dim d: kd per piece product.
inline std::int64_t split_kq(const SplitPolicy& s, std::int64_t d) { return products_of(s) * amx_kd(d); }

/// The bf16 products of a backward (src/cpu/amx/amx.h): AMX tiles or AVX512-BF16, the same layouts and
/// contracts (the forward's kernels), on operands cut into bf16 pieces by `split` (SplitPolicy: 1 piece for
/// bf16 and the f32 opt-in, 2 for f16, as the forward's). The qk operands carry the piece products side by
/// side along the inner dim (kq = products * kd, pack_q_split / pack_k_split); the pv operands are piece
/// planes, one pv call per piece product (pv_split).
struct Bf16Products {
  bool tiles = true;  ///< AMX (else AVX512-BF16)
  SplitPolicy split = kSplitBf16;
  /// Inner dim of the qk operands for head dim d (kd times the piece products).
  [[nodiscard]] std::int64_t kq(std::int64_t d) const { return split_kq(split, d); }
  void qk(const std::uint16_t* a, std::int64_t rows, std::int64_t kd, const std::uint16_t* panels, std::int64_t ncols,
          float scale, float* c, std::int64_t ldc) const {
    if (tiles) {
      amx_qk(a, rows, kd, panels, ncols, scale, c, ldc);
    } else {
      dpbf16_qk(a, rows, kd, panels, ncols, scale, c, ldc);
    }
  }
  void to_bf16(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld, std::uint16_t* b) const {
    if (tiles) {
      amx_to_bf16(s, rows, ncols, ld, b);
    } else {
      dpbf16_to_bf16(s, rows, ncols, ld, b);
    }
  }
  void pv(const std::uint16_t* a, std::int64_t lda, std::int64_t rows, std::int64_t kdim, const std::uint16_t* pairs,
          std::int64_t dp, float* c, std::int64_t ldc) const {
    if (tiles) {
      amx_pv(a, lda, rows, kdim, pairs, dp, c, ldc);
    } else {
      dpbf16_pv(a, lda, rows, kdim, pairs, dp, c, ldc);
    }
  }
  /// c += A B over the P / dS piece products of `split` (split_pairs_pv, smallest first, as the forward's O += P V):
  /// piece x of A at a + x * a_plane, piece y of B's key pairs at pairs + y * b_plane.
  void pv_split(const std::uint16_t* a, std::int64_t a_plane, std::int64_t lda, std::int64_t rows, std::int64_t kdim,
                const std::uint16_t* pairs, std::int64_t b_plane, std::int64_t dp, float* c, std::int64_t ldc) const {
    int x[9] = {0}, y[9] = {0};
    const int n = split.pieces == 1 ? 1 : split_pairs_pv(split, x, y);
    for (int t = 0; t < n; ++t) pv(a + x[t] * a_plane, lda, rows, kdim, pairs + y[t] * b_plane, dp, c, ldc);
  }
  /// The rows of src from row n0 on as a Q tile [rows_pad][kq] (the A operand of qk).
  void pack_tile(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                 std::uint16_t* dst) const {
    if (split.pieces > 1) {
      pack_q_split(src, n0, count, rows_pad, d, amx_kd(d), split, dst);
    } else {
      pack_q_bf16(src, n0, count, rows_pad, d, amx_kd(d), dst);
    }
  }
  /// Rows 0 .. count of src as K panels [count_pad][kq] (the B operand of qk).
  void pack_kpanels(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d,
                    std::uint16_t* dst) const {
    if (split.pieces > 1) {
      pack_k_split(src, count, count_pad, d, amx_kd(d), split, dst);
    } else {
      pack_k_vnni(src, count, count_pad, d, amx_kd(d), dst);
    }
  }
  /// Rows 0 .. count of src as key pairs [count_pad][dp], one plane per piece (the B operand of pv_split).
  void pack_pairs(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                  std::uint16_t* dst, std::int64_t plane) const {
    if (split.pieces > 1) {
      pack_v_split(src, count, count_pad, d, dp, split, dst, plane);
    } else {
      pack_v_vnni(src, count, count_pad, d, dp, dst);
    }
  }
  /// fp32 s (rows x ncols, leading dim ld) as the A operand of pv_split: pieces at b + k * plane, leading dim ld.
  void to_pieces(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld, std::uint16_t* b,
                 std::int64_t plane) const {
    if (split.pieces > 1) {
      split_to_bf16(s, rows, ncols, ld, split, b, plane);
    } else {
      to_bf16(s, rows, ncols, ld, b);
    }
  }
};

}  // namespace flatattn::cpu
