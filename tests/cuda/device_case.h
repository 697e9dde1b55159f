// Runs a check case (src/check/case.h) on the GPU: the host tensors are copied to the device
// byte for byte (so their strides and padding, and the poison in out/lse/dq/dk/dv, travel too),
// forward() or backward() runs on the device views, and the outputs come back into the case for
// judge() against the oracle.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "flatattn/attention.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"
#include "src/cuda/dispatch.h"
#include "src/cuda/policy/ws_tile.h"

namespace flatattn::testing {

using namespace ::flatattn::check;  // HostTensor, Case, judge(): the checks shared with the CLI (src/check)

/// True when a CUDA device is present (tests GTEST_SKIP otherwise).
bool gpu_present();

#define REQUIRE_GPU() \
  if (!::flatattn::testing::gpu_present()) GTEST_SKIP() << "no CUDA device"

/// A fresh seed for one test, printed as "[seed] <test> FLATATTN_SEED=<seed>" so a failure replays.
std::uint64_t seed_for(const char* test);

/// The GPU suites' small base case: B = 2, Hq = 2, Hkv = 1 (GQA), (B, N, H, D) storage, LSE requested.
Case small_case(DType dt, std::int64_t nq, std::int64_t nk, std::int64_t d = 64);

/// The adversarial shapes the forward and backward suites share: lengths 1/17/97, a long causal block,
/// Nq != Nk in both causal alignments, fully masked rows (Nq > Nk causal, a (0, 0) window), a negative
/// scale, GQA and MQA with strided views. Each suite appends its own.
std::vector<Case> edge_cases(DType dt);

/// The feature mix the sm90 suites run at head dim d: windows (fully masked rows for (0, 0) with Nq > Nk),
/// softcap with and without a window (window_nq x window_nk), large logits, a negative scale, GQA and MQA
/// on strided views, and last a varlen batch with empty sequences on both sides (each suite appends its
/// own variant of it).
std::vector<Case> feature_mix(DType dt, std::int64_t d, std::int64_t window_nq, std::int64_t window_nk);

/// forward() of the case on device 0 (optionally on a fresh non-default stream); out and lse of `t`
/// are overwritten with the device results.
Report run_on_gpu(CaseTensors& t, bool own_stream = false);

/// Runs the case on the GPU and judges out (and LSE when requested) against the fp64 oracle with the
/// docs/design.md rule; adds failures naming the case, the kernel and the seed. Returns the call's report.
Report check_case(CaseTensors& t, std::uint64_t seed, const char* what = "");

/// check_case's judgement alone, for outputs already in `t` from the call that returned `r`; returns the out
/// verdict's detail (for progress logs).
std::string judge_forward(const CaseTensors& t, const Report& r, std::uint64_t seed, const char* what = "");

/// check_case and judge_forward with the oracle `o` computed once (oracle_forward) for several runs of the same
/// inputs (copies of one CaseTensors run with different kernels): the host's fp64 oracle is the slow part.
Report check_case(CaseTensors& t, const ForwardOracle& o, std::uint64_t seed, const char* what = "");
std::string judge_forward(const CaseTensors& t, const ForwardOracle& o, const Report& r, std::uint64_t seed,
                          const char* what = "");

/// backward() of the case on device 0 with t.out and t.lse as the forward's results (run the forward
/// first); dq, dk, dv of `t` (poisoned by make_case) are overwritten with the device results, whole
/// storage included, so padding the kernels must not touch comes back too. `edit` may change the
/// device arguments before the call (error tests); when backward() throws, dq/dk/dv still come back
/// (so a test can check that nothing was written) and the error is rethrown.
Report run_backward_on_gpu(CaseTensors& t, bool own_stream = false,
                           const std::function<void(BackwardArgs&)>& edit = {});

/// Where the backward's out and lse come from: our CUDA forward (Flash dataflow, the training path) or
/// the fp64 oracle rounded to the dtype (isolates the backward from the forward's error).
enum class FwdSource { gpu, oracle };

/// Forward (from `src`) then backward on the GPU; dq, dk, dv judged against the fp64 oracle gradients
/// with the docs/design.md rule (yardstick: autograd through naive attention in the input dtype, P, dP, dS
/// rounded after each step). Adds failures naming the gradient, the case, the kernel and the seed.
void check_backward(CaseTensors& t, std::uint64_t seed, const char* what = "", FwdSource src = FwdSource::gpu);

/// Sets FLATATTN_CUDA_SM90 for one scope (nullptr unsets it), restoring the old value. Dispatch caches
/// the variable per device, so each change is followed by cuda::sm90_override_changed(): the next call
/// reads it again.
class ScopedSm90 {
 public:
  explicit ScopedSm90(const char* value) {
    if (const char* old = std::getenv("FLATATTN_CUDA_SM90")) old_ = old, had_ = true;
    value ? setenv("FLATATTN_CUDA_SM90", value, 1) : unsetenv("FLATATTN_CUDA_SM90");
    cuda::sm90_override_changed();
  }
  ~ScopedSm90() {
    had_ ? setenv("FLATATTN_CUDA_SM90", old_.c_str(), 1) : unsetenv("FLATATTN_CUDA_SM90");
    cuda::sm90_override_changed();
  }
  ScopedSm90(const ScopedSm90&) = delete;
  ScopedSm90& operator=(const ScopedSm90&) = delete;

 private:
  std::string old_;
  bool had_ = false;
};

/// Whether s ends with tail (a Report's kernel name and its suffix: "_p", "_sparse", "_sparse_p").
inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

/// Sets an environment variable for one scope (nullptr unsets it), restoring the old value; the cached switches
/// (family.h) read it again at the next call.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    value ? setenv(name, value, 1) : unsetenv(name);
    cuda::sm90_override_changed();
  }
  ~ScopedEnv() {
    had_ ? setenv(name_.c_str(), old_.c_str(), 1) : unsetenv(name_.c_str());
    cuda::sm90_override_changed();
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

/// Sets FLATATTN_CUDA_SM90_WS for one scope (nullptr unsets it; restoring the old value), with
/// sm90_override_changed() so that the next call reads it, and FLATATTN_SM90_WS_CHECK=1: a watchdog timeout of the
/// warp-specialized forward throws, naming its barrier (launch_ws.cuh).
class ScopedWs {
 public:
  explicit ScopedWs(const char* value) {
    if (const char* old = std::getenv("FLATATTN_CUDA_SM90_WS")) old_ = old, had_ = true;
    value ? setenv("FLATATTN_CUDA_SM90_WS", value, 1) : unsetenv("FLATATTN_CUDA_SM90_WS");
    setenv("FLATATTN_SM90_WS_CHECK", "1", 1);  // a watchdog timeout throws, naming its barrier (launch_ws.cuh)
    cuda::sm90_override_changed();
  }
  ~ScopedWs() {
    had_ ? setenv("FLATATTN_CUDA_SM90_WS", old_.c_str(), 1) : unsetenv("FLATATTN_CUDA_SM90_WS");
    cuda::sm90_override_changed();
  }
  ScopedWs(const ScopedWs&) = delete;
  ScopedWs& operator=(const ScopedWs&) = delete;

 private:
  std::string old_;
  bool had_ = false;
};

/// Whether the warp-specialized forward takes the block lists of case c: its tile at c.d (policy/ws_tile.h; D = 64:
/// 192 rows, D = 256: 80-key blocks) divides block_q and block_kv (src/cuda/ws_route.h ws_sparse_fits; lists the
/// library derives are 128 x 128). Forced onto it, other lists are refused.
inline bool ws_takes_sparse(const Case& c) {
  const cuda::WsTile t = cuda::ws_tile(static_cast<int>(c.d));
  const int bq = c.sparse.derive ? 128 : c.sparse.block_q, bkv = c.sparse.derive ? 128 : c.sparse.block_kv;
  return t.block_n > 0 && bq % t.block_m == 0 && bkv % t.block_n == 0;
}

/// The Report's suffix of a sparse call forced with FLATATTN_CUDA_SM90_WS=sched at head dim d: "_ws2_sparse", or
/// "_ws1_sparse" for "2" where the tile has three consumer warpgroups (D = 64: ping-pong pairs two).
inline std::string ws_sparse_suffix(std::int64_t d, const std::string& sched) {
  const bool pairs = cuda::ws_tile(static_cast<int>(d)).consumers == 2;
  return "_ws" + (sched == "2" && !pairs ? std::string("1") : sched) + "_sparse";
}

/// A sparse rule's name for test messages.
inline const char* rule_name(SparseCase::Rule r) {
  switch (r) {
    case SparseCase::Rule::band: return "band";
    case SparseCase::Rule::bits: return "bits";
    case SparseCase::Rule::local_global: return "local_global";
  }
  return "?";
}

/// Whether device 0 runs `dtype` (false for bf16 when only the compute_75 PTX family loads).
bool dtype_runs(DType dtype);

}  // namespace flatattn::testing
