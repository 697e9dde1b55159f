// This machine's single-precision GEMM rate: the compute ceiling the fused engine is measured against
// (`flatattn bench` prints attention GFLOP/s as a ratio of it, taken in the same run).
#pragma once

#include <string>

namespace flatattn::cpu {

/// GFLOP/s (2 n^3 per call) of C = A B for n x n row-major fp32 matrices filled with random values, with
/// `threads` threads (0 = all hardware threads): one warm-up call, then calls until at least 0.5 s and 3
/// calls have run; returns the median call's rate. The library is sgemm_library(): OpenBLAS's
/// cblas_sgemm when the build found OpenBLAS (find_package(OpenBLAS)), Eigen's GEMM otherwise.
/// Throws flatattn::Error (invalid_argument) when n < 1 or threads < 0.
double sgemm_gflops(int n, int threads);

/// "OpenBLAS" or "Eigen": which GEMM sgemm_gflops() times in this build.
std::string sgemm_library();

}  // namespace flatattn::cpu
