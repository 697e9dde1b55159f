#include "tests/cpu/cpu_check.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <tuple>

#include "flatattn/kvcache.h"
#include "src/check/kv_check.h"
#include "src/check/oracle.h"
#include "src/core/validate.h"

namespace flatattn::testing {

bool verbose() {
  static const bool v = std::getenv("FLATATTN_VERBOSE") != nullptr;
  return v;
}

Seeded::Seeded() : seed(fresh_seed()), rng(seed) {
  std::cout << "[ seed     ] FLATATTN_SEED=" << seed << "\n";
}

Report run_forward(CaseTensors& t, const Options& o, const std::optional<cpu::ForwardPlan>& plan) {
  t.out.poison();
  t.lse.poison();
  ForwardArgs a = t.forward_args();
  a.lse = o.return_lse ? t.lse.view() : TensorView{};
  if (!plan) return flatattn::forward(a, o);
  const ValidatedForward v = validate_forward(a, o);
  return cpu::run_forward(v.problem, v.tensors, *plan);
}

Report run_backward(CaseTensors& t, const Options& o, const std::optional<cpu::BackwardPlan>& plan) {
  t.dq.poison();
  t.dk.poison();
  t.dv.poison();
  if (t.c.sinks) t.dsinks.poison();
  if (!t.dbias.shape.empty()) t.dbias.poison();
  const BackwardArgs a = t.backward_args();
  if (!plan) return flatattn::backward(a, o);
  const ValidatedBackward v = validate_backward(a, o);
  return cpu::run_backward(v.problem, v.tensors, *plan);
}

bool strict_fp32(const Case& c) { return c.dtype == DType::f32 && c.input_sd <= 4.0; }

void expect_forward_ok(const CaseTensors& t, const ForwardOracle& o, const std::string& what) {
  EXPECT_EQ(o.naive_fp32_nonfinite, 0) << what << ": cpu::naive_forward, the fp32 yardstick, is not finite";
  const Verdict v = judge_forward(t.out, o, t.c.dtype);
  if (verbose()) std::cout << what << " out: " << v.detail() << "\n";
  EXPECT_TRUE(v.pass) << what << " out: " << v.detail();
  if (strict_fp32(t.c)) EXPECT_LE(v.rel_err, 1e-5) << what << " out: " << v.detail();
  if (t.c.options.return_lse) {
    const Verdict l = judge_lse(t.lse, o.lse, lse_tolerance(t.c.input_sd, o.lse, false, lse_logit_rounding(t)));
    EXPECT_TRUE(l.pass) << what << " lse: " << l.detail();
  }
}

void expect_backward_ok(const CaseTensors& t, const BackwardOracle& ref, const BackwardYardstick& y,
                        const std::string& what) {
  if (t.c.sinks) {
    const Verdict v = judge_dsinks(t, ref, y);
    if (verbose()) std::cout << what << " dsinks: " << v.detail() << "\n";
    EXPECT_TRUE(std::isfinite(v.bound)) << what << " dsinks: the yardstick is not finite";
    EXPECT_TRUE(v.pass) << what << " dsinks: " << v.detail();
  }
  if (t.c.has_bias() && !t.dbias.shape.empty()) {
    const Verdict v = judge_dbias(t, ref, y);
    if (verbose()) std::cout << what << " dbias: " << v.detail() << "\n";
    EXPECT_TRUE(std::isfinite(v.bound)) << what << " dbias: the yardstick is not finite";
    EXPECT_TRUE(v.pass) << what << " dbias: " << v.detail();
  }
  for (const auto& [name, v, noise] : judge_backward(t, ref, y)) {
    if (verbose()) std::cout << what << " " << name << ": " << v.detail() << " noise=" << noise << "\n";
    EXPECT_TRUE(v.pass) << what << " " << name << ": " << v.detail() << " (bound includes 2 x dS noise " << noise << ")";
    // Where dP - D_i cancels (peaked rows), the gradient is as small as its rounding noise and a relative
    // error says nothing; rel_err <= 1e-5 is required wherever the error is not explained by that noise.
    if (strict_fp32(t.c) && v.max_err > 2.0 * noise)
      EXPECT_LE(v.rel_err, 1e-5) << what << " " << name << ": " << v.detail() << " noise=" << noise;
  }
}

void expect_kv_pass(const KvCase& c, std::mt19937_64& rng, const char* kernel) {
  const KvVerdict v =
      check_kvcache(c, rng, [](KvCaseTensors& t) { return forward_kvcache(t.args(), t.c.options); });
  EXPECT_TRUE(v.pass()) << c.name() << ": " << v.detail();
  EXPECT_NE(v.kernel.find(kernel), std::string::npos) << v.kernel;
}

}  // namespace flatattn::testing
