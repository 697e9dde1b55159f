// The CUDA forward against the fp64 oracle (docs/design.md, "The correctness rule"): fresh random shapes and
// features every run, the adversarial list, every head dim through both kernels, poisoned outputs
// (make_case, src/check/case.h, fills out and lse with NaN before the copy to the device).
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <random>
#include <regex>
#include <string>

#include "src/cuda/dispatch.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"
#include "src/check/yardstick.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;


namespace {

/// Skips (with the reason) when the device cannot run dtype, after checking that asking for it is the
/// clear error, not a crash or a silent fallback.
bool skip_dtype(DType dt) {
  if (dtype_runs(dt)) return false;
  std::mt19937_64 rng(1);
  Case c;
  c.dtype = dt;
  c.nq = c.nk = 8;
  CaseTensors t = make_case(c, rng);
  try {
    run_on_gpu(t);
    ADD_FAILURE() << name(dt) << " ran although path_info said this device cannot run it";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::unsupported) << e.what();
  }
  return true;
}

void sweep(DType dt, int cases, const char* test) {
  const std::uint64_t seed = seed_for(test);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < cases; ++i) {
    const Case c = random_case(rng, dt, 300);
    const int pick = static_cast<int>(rng() % 3);
    CaseTensors t = make_case(c, rng);
    // A third of the cases force Flash, a third FLAT where the row fits every family's capacity (128).
    if (pick == 1) t.c.options.dataflow = Dataflow::flash;
    if (pick == 2 && t.c.nk <= 128) t.c.options.dataflow = Dataflow::flat;
    check_case(t, seed, ("random #" + std::to_string(i)).c_str());
    if (::testing::Test::HasFailure()) return;  // one replayable failure is enough
  }
}

/// edge_cases (device_case.h) plus the forward's own: FLAT on masked rows and large logits, padded D,
/// varlen with empty sequences, softcap and windows, every head dim through both dataflows.
std::vector<Case> adversarial(DType dt) {
  std::vector<Case> v = edge_cases(dt);
  {  // the (0, 0) window's fully masked rows through FLAT too
    Case c = small_case(dt, 90, 50);
    c.options.window = {0, 0};
    c.options.dataflow = Dataflow::flat;
    v.push_back(c);
  }
  {  // large logits: scale * |q.k| ~ 1e4 (f16 inputs stay finite: |q.k| stays under 65504)
    Case c = small_case(dt, 77, 128);
    c.options.softmax_scale = 1.f;
    c.input_sd = 35.0;
    v.push_back(c);
    c.options.causal = true;
    c.options.dataflow = Dataflow::flat;
    v.push_back(c);
  }
  for (std::int64_t d : {16, 40, 80, 96, 136, 200, 248}) v.push_back(small_case(dt, 70, 90, d));  // padded D
  {  // varlen with empty sequences on both sides
    Case c = small_case(dt, 0, 0, 128);
    c.varlen = true;
    c.seqlens_q = {0, 5, 0, 130, 64, 1};
    c.seqlens_k = {7, 0, 0, 130, 200, 1};
    c.batch = 6;
    v.push_back(c);
    c.options.causal = true;
    c.strided = true;
    v.push_back(c);
    c.options.causal = false;
    c.options.dataflow = Dataflow::flat;
    c.seqlens_k = {7, 0, 0, 100, 120, 1};
    v.push_back(c);
  }
  {  // softcap, windows
    Case c = small_case(dt, 150, 150, 128);
    c.options.softcap = 30.f;
    c.options.causal = true;
    c.input_sd = 3.0;
    v.push_back(c);
    c.options.causal = false;
    c.options.window = {31, 5};
    v.push_back(c);
    c.options.softcap = 0.f;
    c.options.window = {0, 64};
    c.options.causal_align = CausalAlign::top_left;
    v.push_back(c);
  }
  // Every kernel head dim through both dataflows, odd lengths, with and without causal.
  for (std::int64_t d : {32, 64, 96, 128, 192, 256}) {
    for (bool causal : {false, true}) {
      Case c = small_case(dt, 97, 113, d);
      c.options.causal = causal;
      c.options.dataflow = Dataflow::flash;
      v.push_back(c);
      c.options.dataflow = Dataflow::flat;
      c.nk = 128;
      v.push_back(c);
    }
  }
  return v;
}

}  // namespace

TEST(CudaForward, RandomSweepF16) {
  REQUIRE_GPU();
  if (skip_dtype(DType::f16)) GTEST_SKIP() << "f16 does not run on this device";
  sweep(DType::f16, 40, "RandomSweepF16");
}

TEST(CudaForward, RandomSweepBF16) {
  REQUIRE_GPU();
  if (skip_dtype(DType::bf16)) GTEST_SKIP() << "bf16 needs a SASS family (only the compute_75 PTX loads here)";
  sweep(DType::bf16, 40, "RandomSweepBF16");
}

TEST(CudaForward, AdversarialF16) {
  REQUIRE_GPU();
  if (skip_dtype(DType::f16)) GTEST_SKIP() << "f16 does not run on this device";
  const std::uint64_t seed = seed_for("AdversarialF16");
  std::mt19937_64 rng(seed);
  for (const Case& c : adversarial(DType::f16)) {
    CaseTensors t = make_case(c, rng);
    check_case(t, seed, "adversarial");
  }
}

TEST(CudaForward, AdversarialBF16) {
  REQUIRE_GPU();
  if (skip_dtype(DType::bf16)) GTEST_SKIP() << "bf16 needs a SASS family (only the compute_75 PTX loads here)";
  const std::uint64_t seed = seed_for("AdversarialBF16");
  std::mt19937_64 rng(seed);
  for (const Case& c : adversarial(DType::bf16)) {
    CaseTensors t = make_case(c, rng);
    check_case(t, seed, "adversarial");
  }
}

TEST(CudaForward, LongCausalAgainstOracle) {
  REQUIRE_GPU();
  const DType dt = dtype_runs(DType::bf16) ? DType::bf16 : DType::f16;
  const std::uint64_t seed = seed_for("LongCausalAgainstOracle");
  std::mt19937_64 rng(seed);
  Case c = small_case(dt, 2048, 2048, 128);
  c.batch = 1;
  c.hq = 2;
  c.hkv = 1;
  c.options.causal = true;
  CaseTensors t = make_case(c, rng);
  check_case(t, seed, "long");
}

TEST(CudaForward, NonDefaultStream) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("NonDefaultStream");
  std::mt19937_64 rng(seed);
  CaseTensors t = make_case(small_case(DType::f16, 300, 257, 64), rng);
  run_on_gpu(t, /*own_stream=*/true);
  const ForwardOracle o = oracle_forward(t);
  const Verdict v = judge_forward(t.out, o, DType::f16);
  EXPECT_TRUE(v.pass) << v.detail();
}

TEST(CudaForward, ReportNamesTheKernelAndDataflow) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  Case c = small_case(DType::f16, 64, 100, 80);
  c.options.dataflow = Dataflow::flat;
  CaseTensors t = make_case(c, rng);
  Report r = run_on_gpu(t);
  EXPECT_EQ(r.backend, "cuda");
  EXPECT_EQ(r.dataflow, Dataflow::flat);
  EXPECT_EQ(r.block_n, 100);  // FLAT: the whole row
  // D = 80 runs zero-padded on the next head dim the build has (96 by default; FLATATTN_HDIMS may leave 128).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.kernel, m, std::regex("_d([0-9]+)"))) << r.kernel;
  EXPECT_GE(std::stoi(m[1].str()), 96) << r.kernel;
  EXPECT_NE(r.kernel.find("D=80 zero-padded"), std::string::npos) << r.kernel;
  c.options.dataflow = Dataflow::flash;
  t = make_case(c, rng);
  r = run_on_gpu(t);
  EXPECT_EQ(r.dataflow, Dataflow::flash);
  EXPECT_GT(r.block_m, 0);
  EXPECT_GT(r.block_n, 0);
  EXPECT_LT(r.block_n, 100 + 64);
}

// Empty calls are accepted and write nothing on every dataflow, as on the CPU: Dataflow::automatic must not
// ask the planner (which refuses B = 0) for a shape with no work.
TEST(CudaForward, EmptyBatchOnEveryDataflow) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  for (Dataflow df : {Dataflow::automatic, Dataflow::flash, Dataflow::flat}) {
    Case c = small_case(DType::f16, 64, 64);
    c.batch = 0;
    c.options.dataflow = df;
    CaseTensors t = make_case(c, rng);
    Report r;
    EXPECT_NO_THROW(r = run_on_gpu(t)) << name(df);
    EXPECT_EQ(r.backend, "cuda") << name(df);
  }
}

// The code path that ran is the one the session expects: FLATATTN_EXPECT_PATH=sm75 in the
// CUDA_FORCE_PTX_JIT run (the driver JIT-compiled the compute_75 PTX: ptxVersion 75), sm90 on Hopper
// with the sm90 family built (the Flash forward of D = 128 runs wgmma; the base family is sm80), sm80
// otherwise.
TEST(CudaForward, CodePathIsTheExpectedOne) {
  REQUIRE_GPU();
  const cuda::PathInfo info = cuda::path_info(0, DType::f16);
  std::cout << "[path] family " << cuda::name(info.family) << " ptxVersion " << info.ptx_version
            << " binaryVersion " << info.binary_version << "\n";
  const char* want = std::getenv("FLATATTN_EXPECT_PATH");
  const std::string expect = want ? want : "";
  std::mt19937_64 rng(fresh_seed());
  CaseTensors t = make_case(small_case(DType::f16, 33, 33), rng);
  const Report r = run_on_gpu(t);
  if (expect == "sm75") {
    EXPECT_EQ(info.family, cuda::Family::sm75);
    EXPECT_EQ(info.ptx_version, 75);
    EXPECT_NE(r.kernel.find("sm75"), std::string::npos) << r.kernel;
  } else if (expect == "sm80") {
    EXPECT_EQ(info.family, cuda::Family::sm80);
    EXPECT_GE(info.binary_version, 80);
    EXPECT_FALSE(info.sm90_flash);
    EXPECT_NE(r.kernel.find("sm80"), std::string::npos) << r.kernel;
  } else if (expect == "sm90") {
    EXPECT_EQ(info.family, cuda::Family::sm80);
    EXPECT_TRUE(info.sm90_flash);
    Case c = small_case(DType::f16, 33, 33, 128);  // D = 128: sm90 at every length (policy/tile_size.h)
    c.options.dataflow = Dataflow::flash;
    CaseTensors tf = make_case(c, rng);
    const Report rf = run_on_gpu(tf);
    EXPECT_NE(rf.kernel.find("flash_sm90"), std::string::npos) << rf.kernel;
  } else {
    EXPECT_NE(r.kernel.find(cuda::name(info.family)), std::string::npos) << r.kernel;
  }
}

// A small representative set for compute-sanitizer (memcheck, racecheck): both dataflows, three
// head dims (128-byte and 64-byte swizzles), causal, ragged tiles, varlen with empty sequences,
// strided views. Small enough that the sanitizers finish in seconds.
TEST(CudaForward, SanitizerSet) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("SanitizerSet");
  std::mt19937_64 rng(seed);
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    for (std::int64_t d : {64, 96, 128}) {
      for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
        Case c = small_case(dt, 70, 75, d);
        c.batch = 1;
        c.options.causal = d != 96;
        c.options.dataflow = df;
        c.strided = d == 128;
        CaseTensors t = make_case(c, rng);
        check_case(t, seed, "sanitizer");
      }
    }
    Case c = small_case(dt, 0, 0, 64);
    c.varlen = true;
    c.seqlens_q = {0, 9, 70};
    c.seqlens_k = {3, 0, 65};
    c.batch = 3;
    CaseTensors t = make_case(c, rng);
    check_case(t, seed, "sanitizer varlen");
    // Staged (src/cuda/staging.h): D % 8 != 0 with unaligned strided rows, and varlen.
    c.d = 59;
    t = make_case(c, rng);
    check_case(t, seed, "sanitizer varlen staged");
    Case s = small_case(dt, 70, 75, 59);
    s.batch = 1;
    s.options.causal = true;
    s.strided = true;
    t = make_case(s, rng);
    check_case(t, seed, "sanitizer staged");
  }
}
