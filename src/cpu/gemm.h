// The two tile products of the CPU engine, on fp32 tiles that src/cpu/pack.h prepared.
//
//   gemm_panels: C = A * B where B is K^T (or V^T) packed in panels of kPanel keys: S = Q K^T, dP = dO V^T.
//   gemm_acc:    C += A * B where B is row-major (V, K, Q or dO rows):  O += P V, dQ += dS K,
//                and with trans_a, dV += P^T dO, dK += dS^T Q.
//
// Both are register-blocked micro-kernels (src/cpu/gemm.cc: kMrA x kPanel and kMrB x 64 accumulator
// tiles, 24 vector registers each) looping over L1-sized blocks; no packing happens inside: the callers
// keep their tiles in the layouts below, so every operand is read as it lies. Padding (rows up to a
// multiple of kMrA/kMrB, keys up to a multiple of kPanel, D up to a multiple of 16) is zero-filled by
// the packers, so padded lanes compute zeros and are never stored.
#pragma once

#include <cstdint>

namespace flatattn::cpu {

inline constexpr int kPanel = 32;     ///< keys per packed K^T / V^T panel (kernel A's N)
inline constexpr int kMrA = 12;       ///< rows per kernel A call: Q tiles are a multiple of this
inline constexpr int kMrB = 6;        ///< rows per kernel B call
inline constexpr int kDimAlign = 16;  ///< head dim padded to a multiple of this (one vector)

/// Rows of a Q tile are padded to this (kernel A's and kernel B's row blocks both divide it).
inline constexpr int kRowAlign = kMrA;
/// Key blocks that are kernel B's M (backward dK/dV blocks) are padded to this (kPanel and kMrB divide it).
inline constexpr int kKeyAlignBwd = 96;

constexpr std::int64_t round_up(std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; }
/// Head dim padded for the fp32 tiles.
constexpr std::int64_t padded_d(std::int64_t d) { return round_up(d, kDimAlign); }

/// C[rows x 32*npanels] = A[rows x k] * B[k x 32*npanels] (overwrites C).
///   a:      A in row-group interleaved layout: element (i, d) at (i / kMrA) * kMrA * k + d * kMrA + i % kMrA
///   panels: B in panels, element (d, j) at (j / kPanel) * k * kPanel + d * kPanel + j % kPanel
///   c:      row-major, leading dim ldc
/// rows must be a multiple of kMrA.
void gemm_panels(const float* a, std::int64_t rows, std::int64_t k, const float* panels, std::int64_t npanels,
                 float* c, std::int64_t ldc);

/// gemm_panels with A row-major (element (i, d) at a[i * lda + d]): the same products in the same order, so
/// the same C bit for bit, without the interleaved copy of A.
void gemm_panels_rows(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t k, const float* panels,
                      std::int64_t npanels, float* c, std::int64_t ldc);

/// gemm_panels where row group g (rows g kMrA .. g kMrA + kMrA - 1) needs only its first group_cols[g] columns
/// (a multiple of kPanel; e.g. the keys up to the causal diagonal): panels past them are not computed and those
/// entries of C are left as they were. Computed entries are gemm_panels' bits.
void gemm_panels_upto(const float* a, std::int64_t rows, std::int64_t k, const float* panels, std::int64_t npanels,
                      float* c, std::int64_t ldc, const std::int64_t* group_cols);

/// gemm_acc (A not transposed) where the rows of row group g (kMrA rows, as gemm_panels_upto) read only the
/// first group_cols[g] columns of A (and rows of B): the rest must be zeros there (P past the mask), whose
/// products would add exact zeros, so C gets gemm_acc's bits.
void gemm_acc_upto(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t kdim, const float* b,
                   std::int64_t ldb, std::int64_t n, float* c, std::int64_t ldc, const std::int64_t* group_cols);

/// C[rows x n] += A[rows x kdim] * B[kdim x n].
///   a: A(i, j) at a[i * lda + j], or at a[j * lda + i] when trans_a (A is the transpose of a row-major tile)
///   b: row-major, leading dim ldb;  c: row-major, leading dim ldc
/// rows must be a multiple of kMrB and n a multiple of kDimAlign.
void gemm_acc(const float* a, std::int64_t lda, bool trans_a, std::int64_t rows, std::int64_t kdim, const float* b,
              std::int64_t ldb, std::int64_t n, float* c, std::int64_t ldc);

}  // namespace flatattn::cpu
