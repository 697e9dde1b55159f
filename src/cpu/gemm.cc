// Register-blocked fp32 micro-kernels (see gemm.h for the layouts).
//
// Kernel A (S = Q K^T): a kMrA x kPanel = 12 x 32 tile of C lives in 24 vector accumulators; per step
// over the inner dim it loads 2 vectors of the K^T panel and broadcasts 12 values of A from one
// contiguous run (the interleaved layout), 24 FMAs for 14 loads.
// Kernel B (O += P V): a kMrB x 16*NV tile (6 x 64 for NV = 4) in up to 24 accumulators; per step it
// loads NV vectors of a B row and broadcasts 6 values of A, 24 FMAs for 10 loads.
// gemm_acc walks the inner dim in chunks of kKc so that the B chunk (kKc x 64 floats = 32 KiB) stays in
// L1 while all row groups of the tile stream past it.
#include "src/cpu/gemm.h"

#include <algorithm>

#include "src/cpu/simd.h"

namespace flatattn::cpu {

namespace {

using simd::load;
using simd::store;
using simd::vf;

constexpr std::int64_t kKc = 128;  ///< inner-dim chunk of gemm_acc (B chunk of kKc x 64 floats in L1)

FLATATTN_INLINE void kernel_a(const float* a, const float* bp, std::int64_t k, float* c, std::int64_t ldc) {
  vf c0[kMrA], c1[kMrA];
#pragma GCC unroll 12
  for (int i = 0; i < kMrA; ++i) c0[i] = c1[i] = vf{};
  for (std::int64_t d = 0; d < k; ++d) {
    const vf b0 = load(bp + d * kPanel), b1 = load(bp + d * kPanel + simd::kWidth);
    const float* ad = a + d * kMrA;
#pragma GCC unroll 12
    for (int i = 0; i < kMrA; ++i) {
      c0[i] += ad[i] * b0;
      c1[i] += ad[i] * b1;
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < kMrA; ++i) {
    store(c + i * ldc, c0[i]);
    store(c + i * ldc + simd::kWidth, c1[i]);
  }
}

/// Kernel A on a row-major A (row i at a + i * lda): the same products in the same order as kernel_a.
FLATATTN_INLINE void kernel_a_rows(const float* a, std::int64_t lda, const float* bp, std::int64_t k, float* c,
                                   std::int64_t ldc) {
  vf c0[kMrA], c1[kMrA];
#pragma GCC unroll 12
  for (int i = 0; i < kMrA; ++i) c0[i] = c1[i] = vf{};
  for (std::int64_t d = 0; d < k; ++d) {
    const vf b0 = load(bp + d * kPanel), b1 = load(bp + d * kPanel + simd::kWidth);
#pragma GCC unroll 12
    for (int i = 0; i < kMrA; ++i) {
      const float ai = a[i * lda + d];
      c0[i] += ai * b0;
      c1[i] += ai * b1;
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < kMrA; ++i) {
    store(c + i * ldc, c0[i]);
    store(c + i * ldc + simd::kWidth, c1[i]);
  }
}

template <int NV, bool kTransA>
void kernel_b(const float* a, std::int64_t lda, const float* b, std::int64_t ldb, std::int64_t kc, float* c,
              std::int64_t ldc) {
  vf acc[kMrB][NV];
#pragma GCC unroll 6
  for (int i = 0; i < kMrB; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = load(c + i * ldc + v * simd::kWidth);
  if constexpr (kTransA) {
    for (std::int64_t j = 0; j < kc; ++j) {
      const float* aj = a + j * lda;  // A(i, j) = aj[i]: the 6 values are contiguous
      vf bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = load(b + j * ldb + v * simd::kWidth);
#pragma GCC unroll 6
      for (int i = 0; i < kMrB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] += aj[i] * bv[v];
    }
  } else {
    const float* ar[kMrB];
#pragma GCC unroll 6
    for (int i = 0; i < kMrB; ++i) ar[i] = a + i * lda;
    for (std::int64_t j = 0; j < kc; ++j) {
      vf bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = load(b + j * ldb + v * simd::kWidth);
#pragma GCC unroll 6
      for (int i = 0; i < kMrB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] += ar[i][j] * bv[v];
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < kMrB; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(c + i * ldc + v * simd::kWidth, acc[i][v]);
}

using KernelB = void (*)(const float*, std::int64_t, const float*, std::int64_t, std::int64_t, float*, std::int64_t);

// [trans_a][NV - 1]
constexpr KernelB kKernelsB[2][4] = {
    {kernel_b<1, false>, kernel_b<2, false>, kernel_b<3, false>, kernel_b<4, false>},
    {kernel_b<1, true>, kernel_b<2, true>, kernel_b<3, true>, kernel_b<4, true>}};

}  // namespace

void gemm_panels(const float* a, std::int64_t rows, std::int64_t k, const float* panels, std::int64_t npanels,
                 float* c, std::int64_t ldc) {
  for (std::int64_t p = 0; p < npanels; ++p) {
    const float* bp = panels + p * k * kPanel;
    for (std::int64_t i0 = 0; i0 < rows; i0 += kMrA)
      kernel_a(a + i0 * k, bp, k, c + i0 * ldc + p * kPanel, ldc);
  }
}

void gemm_panels_rows(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t k, const float* panels,
                      std::int64_t npanels, float* c, std::int64_t ldc) {
  for (std::int64_t p = 0; p < npanels; ++p) {
    const float* bp = panels + p * k * kPanel;
    for (std::int64_t i0 = 0; i0 < rows; i0 += kMrA)
      kernel_a_rows(a + i0 * lda, lda, bp, k, c + i0 * ldc + p * kPanel, ldc);
  }
}

void gemm_panels_upto(const float* a, std::int64_t rows, std::int64_t k, const float* panels, std::int64_t npanels,
                      float* c, std::int64_t ldc, const std::int64_t* group_cols) {
  for (std::int64_t p = 0; p < npanels; ++p) {
    const float* bp = panels + p * k * kPanel;
    for (std::int64_t i0 = 0; i0 < rows; i0 += kMrA)
      if (p * kPanel < group_cols[i0 / kMrA]) kernel_a(a + i0 * k, bp, k, c + i0 * ldc + p * kPanel, ldc);
  }
}

void gemm_acc_upto(const float* a, std::int64_t lda, std::int64_t rows, std::int64_t kdim, const float* b,
                   std::int64_t ldb, std::int64_t n, float* c, std::int64_t ldc, const std::int64_t* group_cols) {
  for (std::int64_t k0 = 0; k0 < kdim; k0 += kKc) {
    const std::int64_t kc = std::min(kKc, kdim - k0);
    for (std::int64_t n0 = 0; n0 < n; n0 += 4 * simd::kWidth) {
      const int nv = static_cast<int>(std::min<std::int64_t>(4, (n - n0) / simd::kWidth));
      const KernelB kern = kKernelsB[0][nv - 1];
      for (std::int64_t i0 = 0; i0 < rows; i0 += kMrB) {
        const std::int64_t kg = std::min(kc, group_cols[i0 / kMrA] - k0);  // this row group's inner dim here
        if (kg > 0) kern(a + i0 * lda + k0, lda, b + k0 * ldb + n0, ldb, kg, c + i0 * ldc + n0, ldc);
      }
    }
  }
}

void gemm_acc(const float* a, std::int64_t lda, bool trans_a, std::int64_t rows, std::int64_t kdim, const float* b,
              std::int64_t ldb, std::int64_t n, float* c, std::int64_t ldc) {
  for (std::int64_t k0 = 0; k0 < kdim; k0 += kKc) {
    const std::int64_t kc = std::min(kKc, kdim - k0);
    const float* ak = trans_a ? a + k0 * lda : a + k0;
    const float* bk = b + k0 * ldb;
    for (std::int64_t n0 = 0; n0 < n; n0 += 4 * simd::kWidth) {
      const int nv = static_cast<int>(std::min<std::int64_t>(4, (n - n0) / simd::kWidth));
      const KernelB kern = kKernelsB[trans_a ? 1 : 0][nv - 1];
      for (std::int64_t i0 = 0; i0 < rows; i0 += kMrB) {
        const float* ai = trans_a ? ak + i0 : ak + i0 * lda;
        kern(ai, lda, bk + n0, ldb, kc, c + i0 * ldc + n0, ldc);
      }
    }
  }
}

}  // namespace flatattn::cpu
