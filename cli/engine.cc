#include "cli/engine.h"

#include "src/core/validate.h"

#if __has_include("src/cpu/naive.h")
#include "src/cpu/naive.h"
#define FLATATTN_CLI_HAS_NAIVE 1
#endif
#if __has_include("src/cpu/gemm_rate.h")
#include "src/cpu/gemm_rate.h"
#define FLATATTN_CLI_HAS_SGEMM 1
#endif
#if __has_include("src/cpu/workspace.h")
#include "src/cpu/workspace.h"
#define FLATATTN_CLI_HAS_WORKSPACE 1
#endif

namespace flatattn::cli::engine {

#ifndef FLATATTN_CLI_HAS_NAIVE
namespace {
[[noreturn]] void missing(const char* what) {
  throw Error(Error::Kind::unsupported, "method", what, "this build's CPU engine does not provide it",
              "build with the CPU engine (src/cpu)");
}
}  // namespace
#endif

bool has_naive() {
#ifdef FLATATTN_CLI_HAS_NAIVE
  return true;
#else
  return false;
#endif
}

void naive_forward(const ForwardArgs& args, const Options& options) {
#ifdef FLATATTN_CLI_HAS_NAIVE
  const ValidatedForward v = validate_forward(args, options);
  cpu::naive_forward(v.problem, v.tensors);
#else
  (void)args;
  (void)options;
  missing("naive");
#endif
}

std::optional<double> gemm_gflops(Gemm gemm, int n, int threads) {
#ifdef FLATATTN_CLI_HAS_SGEMM
  return gemm == Gemm::bf16 ? cpu::bf16_gemm_gflops(n, threads) : cpu::sgemm_gflops(n, threads);
#else
  (void)gemm;
  (void)n;
  (void)threads;
  return std::nullopt;
#endif
}

std::string gemm_library(Gemm gemm) {
#ifdef FLATATTN_CLI_HAS_SGEMM
  return gemm == Gemm::bf16 ? cpu::bf16_gemm_library() : cpu::sgemm_library();
#else
  (void)gemm;
  return "";
#endif
}

std::optional<std::size_t> workspace_bytes(const ForwardArgs& args, const Options& options, Dataflow dataflow) {
#ifdef FLATATTN_CLI_HAS_WORKSPACE
  const ValidatedForward v = validate_forward(args, options);
  return cpu::workspace_bytes(v.problem, dataflow);
#else
  (void)args;
  (void)options;
  (void)dataflow;
  return std::nullopt;
#endif
}

std::optional<std::size_t> backward_workspace_bytes(const BackwardArgs& args, const Options& options) {
#ifdef FLATATTN_CLI_HAS_WORKSPACE
  return cpu::backward_workspace_bytes(validate_backward(args, options).problem);
#else
  (void)args;
  (void)options;
  return std::nullopt;
#endif
}

std::optional<std::size_t> naive_workspace_bytes(const ForwardArgs& args, const Options& options) {
#ifdef FLATATTN_CLI_HAS_NAIVE
  return cpu::naive_workspace_bytes(validate_forward(args, options).problem);
#else
  (void)args;
  (void)options;
  return std::nullopt;
#endif
}

}  // namespace flatattn::cli::engine
