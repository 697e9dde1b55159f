// Helpers of the CPU engine tests: run the engine on a case (public API or an explicit plan) and judge
// the result against the fp64 oracle with the correctness rule of docs/design.md.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include "src/cpu/engine.h"
#include "src/check/case.h"
#include "src/check/kv_case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"
#include "src/check/yardstick.h"

namespace flatattn::testing {

using namespace ::flatattn::check;  // HostTensor, Case, judge(): the checks shared with the CLI (src/check)

/// True when FLATATTN_VERBOSE is set: every verdict is printed, passing or not.
bool verbose();

/// A fresh seed, printed and attached to every failure message of the calling scope.
struct Seeded {
  std::uint64_t seed;
  std::mt19937_64 rng;
  Seeded();
  [[nodiscard]] std::string trace() const { return "FLATATTN_SEED=" + std::to_string(seed); }
};

/// A shape of the path sweeps (test_split, test_split_backward): B, Nq, Nk, Hq, Hkv, D and causal.
struct CaseShape {
  std::int64_t b, nq, nk, hq, hkv, d;
  bool causal;
};

/// The case of shape sh in dtype dt, with its LSE.
inline Case shape_case(DType dt, const CaseShape& sh) {
  Case c;
  c.dtype = dt;
  c.batch = sh.b, c.nq = sh.nq, c.nk = sh.nk, c.hq = sh.hq, c.hkv = sh.hkv, c.d = sh.d;
  c.options.causal = sh.causal;
  c.options.return_lse = true;
  return c;
}

/// Forward of case t into t.out (and t.lse when return_lse), poisoning them first. With a plan, runs
/// cpu::run_forward with it (after validation); otherwise the public flatattn::forward.
Report run_forward(CaseTensors& t, const Options& o, const std::optional<cpu::ForwardPlan>& plan = std::nullopt);

/// Backward of case t into t.dq/dk/dv (poisoned first), from t.out and t.lse (run_forward them first).
Report run_backward(CaseTensors& t, const Options& o, const std::optional<cpu::BackwardPlan>& plan = std::nullopt);

/// Whether a case's fp32 result must also meet rel_err <= 1e-5: every fp32 case except large logits,
/// where fp32 rounding of S itself (|S| ~ 1e4, ulp ~ 1e-3) moves P by more than that (the naive fp32
/// yardstick of judge() covers them).
bool strict_fp32(const Case& c);

/// Forward outputs of t (after run_forward) against the oracle o (forward_yardstick: src/check/yardstick.h):
/// out by judge(), lse by judge_lse(), rel_err <= 1e-5 for strict fp32 cases, and no non-finite value in the
/// engine's naive fp32 yardstick. `what` names the run in failure messages.
void expect_forward_ok(const CaseTensors& t, const ForwardOracle& o, const std::string& what);

/// dq, dk, dv of t (after run_backward) against the oracle and the yardstick: judge_backward() (the rule
/// plus, for f32, 2 x the dS rounding noise on dq and dk), and rel_err <= 1e-5 for strict fp32 cases whose
/// error exceeds that noise.
void expect_backward_ok(const CaseTensors& t, const BackwardOracle& ref, const BackwardYardstick& y,
                        const std::string& what);

/// forward_kvcache of KV case c on the CPU, judged against the fp64 oracle by check_kvcache (src/check/kv_check.h);
/// adds a failure naming the case unless it passes, and unless the Report's kernel name contains `kernel`.
void expect_kv_pass(const KvCase& c, std::mt19937_64& rng, const char* kernel);

}  // namespace flatattn::testing
