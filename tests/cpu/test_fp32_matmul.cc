// The f32 opt-in to bf16 products (Options::fp32_matmul = bf16, include/flatattn/options.h; src/cpu/amx/amx.h).
//
// How it is judged. The opt-in changes one thing on purpose: the f32 Q, K, V (and dO) are rounded to bf16
// (nearest even) when the engine packs them; everything after that is the bf16 path. So the judged reference is
// the fp64 attention of the ROUNDED inputs -- the oracle of a "bf16 twin" of the case, whose q, k, v, dout are
// the f32 values rounded to bf16 -- and the tolerance is the project's rule for bf16 inputs (src/check/rule.h:
// 2 x the error of the naive attention computed in bf16 on those same inputs, plus the bf16 floor). Judging
// against the oracle of the unrounded f32 inputs under the f32 rule would fail by design (the rounding moves O
// by ~1e-3 relative), and under the bf16 rule it would credit the yardstick with an input rounding it never
// saw; the twin makes the question exact: "is this a correct bf16 attention of the inputs the user allowed us
// to round?". On top of the rule, the forward must be bitwise the bf16 call on the twin rounded once more to
// bf16 (its O) and equal in LSE: the same path, the same products, only the final store differs -- so the
// packers round exactly as float_to_bf16 does (nearest even), never truncate.
//
// The suites run on every matrix path this machine has (AMX, AVX512-BF16), or on the one FLATATTN_CPU_MATMUL
// forces (ctest entries cpu_forward_matmul_* / cpu_backward_matmul_*); forced "fp32" checks the override: the
// exact fp32 products, judged by the f32 rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "flatattn/error.h"
#include "src/check/features.h"
#include "src/core/half.h"
#include "src/cpu/amx/amx.h"
#include "tests/cpu/cpu_check.h"
#include "tests/cpu/matmul_env.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {


/// The paths to run the opt-in on: the forced one when FLATATTN_CPU_MATMUL names one, else every matrix path
/// here (AMX, AVX512-BF16); empty when this machine has neither (the refusal test covers that machine).
std::vector<std::string> opt_in_paths() {
  const char* env = std::getenv("FLATATTN_CPU_MATMUL");
  const std::string v = env ? env : "";
  if (v == "amx" || v == "avx512bf16" || v == "fp32") return {v};
  std::vector<std::string> p;
  if (cpu::amx_available()) p.push_back("amx");
  if (cpu::avx512bf16_available()) p.push_back("avx512bf16");
  return p;
}

/// x's logical elements rounded to bf16 (nearest even: HostTensor::set stores through float_to_bf16).
HostTensor rounded(const HostTensor& x) {
  HostTensor r = HostTensor::poisoned_like(x, DType::bf16);
  for (std::int64_t i = 0; i < x.numel(); ++i) r.set(i, x.at(i));
  return r;
}

/// The bf16 twin of an f32 case: the same case in bf16 with q, k, v (and dout) the f32 values rounded to bf16;
/// every other tensor (bias, slopes, sinks, sparse lists, cu_seqlens) shared as is; outputs poisoned, bf16.
CaseTensors bf16_twin(const CaseTensors& t) {
  CaseTensors r = t;
  r.c.dtype = DType::bf16;
  r.q = rounded(t.q);
  r.k = rounded(t.k);
  r.v = rounded(t.v);
  r.out = HostTensor::poisoned_like(t.out, DType::bf16);
  if (!t.dout.shape.empty()) {
    r.dout = rounded(t.dout);
    r.dq = HostTensor::poisoned_like(t.dq, DType::bf16);
    r.dk = HostTensor::poisoned_like(t.dk, DType::bf16);
    r.dv = HostTensor::poisoned_like(t.dv, DType::bf16);
  }
  return r;
}

Options opted_in(Options o, Dataflow df = Dataflow::automatic) {
  o.fp32_matmul = Fp32Matmul::bf16;
  o.return_lse = true;
  o.dataflow = df;
  return o;
}

/// The f32 forward with the opt-in on `path` against the twin's oracle under the bf16 rule, and bitwise against
/// the twin's own bf16 run (forced "fp32": the exact products under the f32 rule instead).
void check_forward(CaseTensors& t, const std::string& path) {
  ScopedMatmul env(path.c_str());
  const bool exact = path == "fp32";
  CaseTensors twin = bf16_twin(t);
  const ForwardOracle o = forward_yardstick(exact ? t : twin);
  for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
    const Options opt = opted_in(t.c.options, df);
    const Report r = run_forward(t, opt);
    const std::string what = r.kernel + " under " + path;
    EXPECT_TRUE(exact ? !ends_with(r.kernel, "_amx") && !ends_with(r.kernel, "_avx512bf16")
                      : ends_with(r.kernel, "_" + path))
        << what;
    if (exact) {  // the override runs the fp32 products: the ordinary f32 rule
      expect_forward_ok(t, o, what);
      continue;
    }
    CaseTensors judged = twin;  // the twin's rule (bf16) and oracle on the f32 outputs
    judged.out = t.out;
    judged.lse = t.lse;
    expect_forward_ok(judged, o, what);
    // Bitwise: the bf16 call on the rounded inputs, same path and dataflow, stores bf16(O) and the same LSE.
    (void)run_forward(twin, opt);
    std::int64_t differ = 0, lse_differ = 0;
    for (std::int64_t i = 0; i < t.out.numel(); ++i) {
      const double want = twin.out.at(i), got = bf16_to_float(float_to_bf16(static_cast<float>(t.out.at(i))));
      if (!(got == want || (std::isnan(got) && std::isnan(want)))) ++differ;
    }
    for (std::int64_t i = 0; i < t.lse.numel(); ++i)
      if (!(t.lse.at(i) == twin.lse.at(i) || (std::isnan(t.lse.at(i)) && std::isnan(twin.lse.at(i))))) ++lse_differ;
    EXPECT_EQ(differ, 0) << what << ": O elements whose bf16 rounding differs from the bf16 call on the rounded inputs";
    EXPECT_EQ(lse_differ, 0) << what << ": LSE elements that differ from the bf16 call on the rounded inputs";
  }
}

/// Forward and backward of the f32 case with the opt-in on `path`; the gradients against the twin's oracle and
/// bf16 yardstick (forced "fp32": the f32 rule).
void check_backward(CaseTensors& t, const std::string& path) {
  ScopedMatmul env(path.c_str());
  const bool exact = path == "fp32";
  const Options opt = opted_in(t.c.options);
  (void)run_forward(t, opt);
  const Report r = run_backward(t, opt);
  const std::string what = r.kernel + " under " + path;
  EXPECT_TRUE(exact ? !ends_with(r.kernel, "_amx") && !ends_with(r.kernel, "_avx512bf16")
                    : ends_with(r.kernel, "_" + path))
      << what;
  if (exact) {
    const BackwardOracle ref = oracle_backward(t);
    expect_backward_ok(t, ref, naive_backward(t, ref), what);
    return;
  }
  CaseTensors judged = bf16_twin(t);
  const BackwardOracle ref = oracle_backward(judged);
  // The yardstick's dsinks term is the FA2 formulation on the backward's own inputs (src/check/yardstick.cc,
  // dsinks_from_stored): the O and LSE this backward read, i.e. the f32 forward's, not the twin's poisoned ones.
  judged.out = t.out, judged.lse = t.lse;
  const BackwardYardstick naive = naive_backward(judged, ref);
  // The f32 gradients, judged under the twin's (bf16) rule.
  judged.dq = t.dq, judged.dk = t.dk, judged.dv = t.dv, judged.dsinks = t.dsinks, judged.dbias = t.dbias;
  expect_backward_ok(judged, ref, naive, what);
}

// Every feature row of the table (masks, causal both alignments, windows, GQA, varlen, softcap, ALiBi, sinks,
// dropout, bias, block-sparse ...) in f32 with the opt-in, both dataflows, on every matrix path.
TEST(CpuFp32Matmul, ForwardFeatureTable) {
  const std::vector<std::string> paths = opt_in_paths();
  if (paths.empty()) GTEST_SKIP() << "neither AMX-BF16 nor AVX512-BF16 here (Refused* covers this machine)";
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const Feature& f : features()) {
    const Case c = feature_case(f, DType::f32);
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng);
    for (const std::string& path : paths) check_forward(t, path);
  }
}

// Head dims that pad to the AMX tiles (odd, not multiples of 32), odd lengths, GQA, causal, Nq != Nk.
TEST(CpuFp32Matmul, ForwardShapes) {
  const std::vector<std::string> paths = opt_in_paths();
  if (paths.empty()) GTEST_SKIP() << "neither AMX-BF16 nor AVX512-BF16 here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  struct Shape {
    std::int64_t b, nq, nk, hq, hkv, d;
    bool causal;
  };
  const std::vector<Shape> shapes = {{1, 1, 1, 1, 1, 16, false},   {2, 37, 53, 4, 2, 59, true},
                                     {1, 130, 300, 2, 1, 128, true}, {2, 200, 200, 3, 3, 64, false},
                                     {1, 17, 250, 2, 2, 48, true},   {1, 64, 33, 2, 2, 256, false}};
  for (const Shape& sh : shapes) {
    Case c;
    c.dtype = DType::f32;
    c.batch = sh.b, c.nq = sh.nq, c.nk = sh.nk, c.hq = sh.hq, c.hkv = sh.hkv, c.d = sh.d;
    c.options.causal = sh.causal;
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng);
    for (const std::string& path : paths) check_forward(t, path);
  }
}

TEST(CpuFp32Matmul, BackwardFeatureTable) {
  const std::vector<std::string> paths = opt_in_paths();
  if (paths.empty()) GTEST_SKIP() << "neither AMX-BF16 nor AVX512-BF16 here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const Feature& f : features()) {
    const Case c = feature_case(f, DType::f32);
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
    for (const std::string& path : paths) check_backward(t, path);
  }
}

TEST(CpuFp32Matmul, BackwardShapes) {
  const std::vector<std::string> paths = opt_in_paths();
  if (paths.empty()) GTEST_SKIP() << "neither AMX-BF16 nor AVX512-BF16 here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const std::int64_t d : {40, 64, 96, 128}) {
    Case c;
    c.dtype = DType::f32, c.batch = 2, c.nq = 61, c.nk = 75, c.hq = 4, c.hkv = 2, c.d = d;
    c.options.causal = d != 96;
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng, true);
    for (const std::string& path : paths) check_backward(t, path);
  }
}

// The rule of the choice (choose_matmul) on every machine kind, including those this one is not.
TEST(CpuFp32Matmul, ChooseMatmulRule) {
  using cpu::MatmulPath;
  const auto units = [](bool amx, bool dp, bool built = true, bool fast = false) {
    cpu::MatmulUnits u;
    u.amx = amx, u.dpbf16 = dp, u.dpbf16_built = built, u.dpbf16_outruns_fp32 = fast;
    return u;
  };
  const auto choose = [&](DType dt, Fp32Matmul m, const char* env, bool amx, bool dp, bool fast = false) {
    return cpu::choose_matmul(dt, m, env, units(amx, dp, true, fast));
  };
  const Fp32Matmul exact = Fp32Matmul::exact, bf16 = Fp32Matmul::bf16;
  EXPECT_EQ(choose(DType::f32, exact, "", true, true), MatmulPath::fp32);       // the default: exact
  EXPECT_EQ(choose(DType::f32, bf16, "", true, true), MatmulPath::amx);          // auto: amx first
  EXPECT_EQ(choose(DType::f32, bf16, "auto", false, true), MatmulPath::avx512bf16);
  EXPECT_EQ(choose(DType::bf16, bf16, "", false, true), MatmulPath::fp32);       // bf16 inputs: unchanged rule
  EXPECT_EQ(choose(DType::bf16, exact, "", true, false), MatmulPath::amx);
  EXPECT_EQ(choose(DType::f32, bf16, "fp32", true, true), MatmulPath::fp32);    // the override still applies
  EXPECT_EQ(choose(DType::f32, bf16, "avx512bf16", true, true), MatmulPath::avx512bf16);
  // f16: exact bf16 pieces (SplitPolicy, amx.h) by bf16's rule: auto takes AMX where usable (detect.cc).
  EXPECT_EQ(choose(DType::f16, exact, "amx", true, true), MatmulPath::amx);
  EXPECT_EQ(choose(DType::f16, exact, "", true, true), MatmulPath::amx);
  EXPECT_EQ(choose(DType::f16, exact, "auto", true, true), MatmulPath::amx);
  EXPECT_EQ(choose(DType::f16, exact, "", false, true), MatmulPath::fp32);  // avx512bf16 only when forced
  EXPECT_EQ(choose(DType::f16, exact, "fp32", true, true), MatmulPath::fp32);
  EXPECT_EQ(choose(DType::f16, exact, "avx512bf16", true, true), MatmulPath::avx512bf16);
  // A CPU listed in kFastDpbf16 (detect.cc: AVX512-BF16 measured faster than the fp32 path) without AMX: auto takes
  // avx512bf16 for bf16 inputs; f16 (pieces) and f32 exact keep the fp32 path; AMX still comes first; the listing
  // alone (no usable AVX512-BF16) changes nothing; and "fp32" still overrides.
  EXPECT_EQ(choose(DType::bf16, exact, "", false, true, true), MatmulPath::avx512bf16);
  EXPECT_EQ(choose(DType::bf16, exact, "auto", false, true, true), MatmulPath::avx512bf16);
  EXPECT_EQ(choose(DType::bf16, exact, "", false, true, false), MatmulPath::fp32);
  EXPECT_EQ(choose(DType::bf16, exact, "", true, true, true), MatmulPath::amx);
  EXPECT_EQ(choose(DType::bf16, exact, "", false, false, true), MatmulPath::fp32);
  EXPECT_EQ(choose(DType::bf16, exact, "fp32", false, true, true), MatmulPath::fp32);
  EXPECT_EQ(choose(DType::f16, exact, "", false, true, true), MatmulPath::fp32);
  EXPECT_EQ(choose(DType::f32, exact, "", false, true, true), MatmulPath::fp32);
  EXPECT_EQ(choose(DType::f32, bf16, "", false, true, true), MatmulPath::avx512bf16);
  const auto error_names = [](auto&& f, const std::string& argument) {
    try {
      (void)f();
      ADD_FAILURE() << "no Error (expected one naming " << argument << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
    }
  };
  // A CPU with neither unit: an Error naming the option, never a silent exact run.
  error_names([&] { return choose(DType::f32, bf16, "", false, false); }, "fp32_matmul");
  error_names([&] { return choose(DType::f32, bf16, "auto", false, false); }, "fp32_matmul");
  error_names([&] { return choose(DType::f16, bf16, "", true, true); }, "fp32_matmul");
  error_names([&] { return choose(DType::f32, bf16, "amx", false, true); }, "FLATATTN_CPU_MATMUL");
  error_names([&] { return choose(DType::f32, bf16, "avx512bf16", true, false); }, "FLATATTN_CPU_MATMUL");
  error_names([&] { return cpu::choose_matmul(DType::f32, bf16, "avx512bf16", units(true, true, false)); },
              "FLATATTN_CPU_MATMUL");
  error_names([&] { return choose(DType::f32, bf16, "tiles", true, true); }, "FLATATTN_CPU_MATMUL");
}

/// Runs the public forward of t with o, expecting an Error naming `argument` and out still all poison.
void expect_refused(CaseTensors& t, const Options& o, const std::string& argument) {
  try {
    (void)run_forward(t, o);
    ADD_FAILURE() << "no Error (expected one naming " << argument << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), argument) << e.what();
  }
  EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << "out was written before the Error";
}

// Through the public API: f16 inputs with the opt-in, and this machine's answer where it has neither unit (or
// where forcing an absent unit can simulate it).
TEST(CpuFp32Matmul, RefusedWhereItCannotBeServed) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c;
  c.batch = 1, c.nq = 40, c.nk = 40, c.hq = 2, c.hkv = 2, c.d = 64;
  c.dtype = DType::f16;
  CaseTensors h = make_case(c, s.rng, true);
  expect_refused(h, opted_in(c.options), "fp32_matmul");
  c.dtype = DType::f32;
  CaseTensors t = make_case(c, s.rng, true);
  {
    ScopedMatmul env(nullptr);  // auto
    if (!cpu::amx_available() && !cpu::avx512bf16_available()) {
      expect_refused(t, opted_in(c.options), "fp32_matmul");
    } else {
      const Report r = run_forward(t, opted_in(c.options));
      EXPECT_TRUE(ends_with(r.kernel, cpu::amx_available() ? "_amx" : "_avx512bf16")) << r.kernel;
    }
  }
  if (!cpu::amx_available()) {
    ScopedMatmul env("amx");
    expect_refused(t, opted_in(c.options), "FLATATTN_CPU_MATMUL");
  }
  if (!cpu::avx512bf16_available()) {
    ScopedMatmul env("avx512bf16");
    expect_refused(t, opted_in(c.options), "FLATATTN_CPU_MATMUL");
  }
  // The backward refuses f16 the same way, before writing a gradient.
  h.dq.poison();
  try {
    (void)run_backward(h, opted_in(c.options));
    ADD_FAILURE() << "no Error for f16 with fp32_matmul = bf16 in the backward";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "fp32_matmul") << e.what();
  }
  EXPECT_EQ(h.dq.count_nonfinite(), h.dq.numel()) << "dq was written before the Error";
}

// The default leaves f32 exact: no matrix path, the f32 rule with rel_err <= 1e-5 (expect_forward_ok).
TEST(CpuFp32Matmul, DefaultStaysExact) {
  ScopedMatmul env(nullptr);
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c;
  c.batch = 2, c.nq = 70, c.nk = 90, c.hq = 4, c.hkv = 2, c.d = 64;
  c.options.causal = true;
  c.options.return_lse = true;
  CaseTensors t = make_case(c, s.rng);
  const ForwardOracle o = forward_yardstick(t);
  const Report r = run_forward(t, c.options);
  EXPECT_FALSE(ends_with(r.kernel, "_amx") || ends_with(r.kernel, "_avx512bf16")) << r.kernel;
  expect_forward_ok(t, o, r.kernel);
}

}  // namespace
