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

/// GFLOP/s (2 n^3 per call) of C = A B with A, B bf16 and C fp32 (n x n, row-major, random values), with
/// `threads` threads (0 = all hardware threads), timed as sgemm_gflops: the ceiling of the bf16 paths (AMX,
/// AVX512-BF16). The library is oneDNN's dnnl_gemm_bf16bf16f32 (its brgemm kernels on AVX512-BF16 and AMX),
/// loaded at run time with dlopen, so the build does not depend on it: FLATATTN_ONEDNN_LIB names the file, else
/// libdnnl.so.3, libdnnl.so.2 and libdnnl.so are tried (Debian: libdnnl2; PyPI's onednn-cpu-gomp wheel through
/// FLATATTN_ONEDNN_LIB). Threads are set through OpenMP (omp_set_num_threads), which a oneDNN built with another
/// runtime ignores (bf16_gemm_library() names its runtime). Throws flatattn::Error: invalid_argument when n < 1
/// or threads < 0, unsupported when no oneDNN loads, runtime when the call returns an error status.
double bf16_gemm_gflops(int n, int threads);

/// "oneDNN <version> (<file>, <runtime> threads)" for the library bf16_gemm_gflops() would use, or "" when none
/// loads.
std::string bf16_gemm_library();

}  // namespace flatattn::cpu
