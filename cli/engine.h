// What the CLI uses from the CPU engine beyond the public API (src/cpu internals), in one place:
// the naive materialized attention (the memory/time yardstick), the SGEMM and bf16 GEMM rates of the machine
// (the compute ceilings) and the engine's workspace size. Each reports whether this build provides it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "flatattn/attention.h"

namespace flatattn::cli::engine {

/// True when this build has the CPU engine's naive attention (src/cpu/naive.h).
bool has_naive();
/// Naive attention as a framework computes it: S = scale QK^T and P = softmax(S) materialized in
/// fp32 (N x N per head slice), then O = PV. CPU tensors; validates like forward().
void naive_forward(const ForwardArgs& args, const Options& options);

/// The GEMMs whose rates are the CPU's compute ceilings (src/cpu/gemm_rate.h): f32 (SGEMM by OpenBLAS or Eigen),
/// and bf16 in, fp32 out (oneDNN, loaded at run time).
enum class Gemm { f32, bf16 };
/// That GEMM's rate (GFLOP/s) on this machine, n x n x n, measured now with `threads` threads (0 = all); nullopt
/// when this build has no CPU engine. Gemm::bf16 throws Error when no oneDNN loads.
std::optional<double> gemm_gflops(Gemm gemm, int n, int threads);
/// Which library measures it ("OpenBLAS", "Eigen", "oneDNN 2.6.3 (libdnnl.so.2, OpenMP threads)"), "" when none.
std::string gemm_library(Gemm gemm);

/// Bytes of scratch the CPU engine allocates for one forward of `args` with `dataflow`;
/// nullopt when this build does not provide it.
std::optional<std::size_t> workspace_bytes(const ForwardArgs& args, const Options& options, Dataflow dataflow);
/// The same for one backward (all threads together).
std::optional<std::size_t> backward_workspace_bytes(const BackwardArgs& args, const Options& options);
/// The same for naive_forward (its N x N fp32 score slices: one per thread).
std::optional<std::size_t> naive_workspace_bytes(const ForwardArgs& args, const Options& options);

}  // namespace flatattn::cli::engine
