// The warp-specialized TMA forward of the sm90 family (src/cuda/sm90/ws_fwd_kernel.cuh), selected with
// FLATATTN_CUDA_SM90_WS=1|2|3 (set inside each test, to the suite's schedule: FLATATTN_TEST_WS_SCHEDULE, else
// FLATATTN_CUDA_SM90_WS as the process got it, else 1): the kernel against the fp64 oracle (the docs/design.md
// rule) through the public forward(), at D = 64 (192-row tiles), 128 and 256 (80-key blocks), on the shapes that stress its
// pipeline and its tails -- lengths around the row tile and the key block, long key ranges that wrap the K/V
// ring many times, Nq != Nk in both causal alignments, windows and fully masked rows, GQA/MQA on strided views,
// padded head dims, a negative scale, large logits, sinks, LSE, softcap and ALiBi, varlen (empty and 1-row
// sequences, Nq != Nk per sequence, causal both ways) -- checking on every case that the warp-specialized kernel
// is the one that ran (its launch counter moved). Dropout (issue 15): against the oracle on batched and varlen
// cases, and bitwise the mask of dropout_mask() through a probe case at D = 64, 128, 256. Then what it refuses: the
// additive bias, with an Error naming FLATATTN_CUDA_SM90_WS. Skipped where no sm_90 GPU runs the sm90 family.
//
// A pipeline bug hangs rather than fails: each barrier wait of the kernel gives up after
// FLATATTN_SM90_WS_WATCHDOG_NS (4 s; src/cuda/sm90/tma.cuh), and the suite sets FLATATTN_SM90_WS_CHECK=1 so that
// such a call throws, naming the barrier. Every case prints its shape before it runs and its time and error
// after (flushed: the GPU logs are files), a GPU call slower than 2 s fails and stops the suite (every later
// test fails at once), and a call that has not returned after 20 s (a hang out of the watchdog's reach, e.g. a
// named barrier) prints the case and ends the process. The first tests are the smallest shape and the
// bench's shape (B 1, N 16384, Hq 16, D 128, sampled rows against the oracle). scripts/ws_probe.sh runs it all.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "flatattn/error.h"
#include "src/check/case.h"
#include "src/check/dropout_probe.h"
#include "src/check/features.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"
#include "src/core/mask.h"
#include "src/cuda/dispatch.h"
#include "src/cuda/family.h"
#include "src/cuda/policy/heuristics.h"
#include "src/cuda/policy/ws_policy.h"
#include "src/cuda/runtime.h"
#include "src/cuda/registry.h"
#include "src/cuda/ws_route.h"
#include "tests/cuda/device_case.h"
#include "tests/cuda/sm90_ws_cases.h"
#ifdef FLATATTN_TEST_SM90
#include "tests/cuda/tma_checks.h"
#endif

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

bool sm90_runs() {
  if (!gpu_present()) return false;
  return cuda::path_info(0, DType::bf16).sm90_flash;
}

/// Set by the first case that was too slow or whose pipeline timed out: every later test of the suite fails at
/// once (a broken pipeline would cost each of them its timeouts).
std::string g_stopped;

#define REQUIRE_SM90_WS()                                                                                     \
  if (!sm90_runs()) GTEST_SKIP() << "no sm_90 GPU, the sm90 family is not built, or FLATATTN_CUDA_SM90=0"; \
  if (!g_stopped.empty()) FAIL() << "not run: the suite stopped after " << g_stopped

/// One progress line, flushed at once (the GPU logs are files: a killed run keeps every line printed so far).
void say(const std::string& line) {
  std::cout << "[ws] " << line << std::endl;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Ends the process (exit code 124, the `timeout` convention) when a GPU call has not returned after kHangS:
/// a hang the kernel's watchdog cannot cut (named barriers, a wait outside it) then names its case in the log
/// instead of running into the caller's timeout silently.
class HangGuard {
 public:
  static constexpr int kHangS = 20;
  explicit HangGuard(std::string what) : what_(std::move(what)), thread_([this] {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(kHangS), [this] { return done_; })) {
      std::cout << "[ws] HUNG: no return after " << kHangS << " s in " << what_ << "; ending the process" << std::endl;
      std::fflush(stdout);
      std::_Exit(124);
    }
  }) {}
  ~HangGuard() {
    {
      const std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  HangGuard(const HangGuard&) = delete;
  HangGuard& operator=(const HangGuard&) = delete;

 private:
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

/// run_on_gpu under the HangGuard and the time limit, with progress lines. Returns false (after a failure that
/// stops the suite) when the call threw or took longer than limit_s.
bool timed_run(CaseTensors& t, Report& r, const std::string& what, double limit_s) {
  const std::string shape = what + " [" + t.c.name() + "]";
  say("run  " + shape);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    const HangGuard guard(shape);
    r = run_on_gpu(t);
  } catch (const std::exception& e) {
    g_stopped = shape + ": threw";
    ADD_FAILURE() << shape << " threw: " << e.what();
    say("FAIL " + shape + " threw: " + e.what());
    return false;
  }
  const double dt = seconds_since(t0);
  if (dt > limit_s) {
    g_stopped = shape + ": " + std::to_string(dt) + " s";
    ADD_FAILURE() << shape << " kernel " << r.kernel << ": the GPU call took " << dt << " s (limit " << limit_s
                  << " s): a pipeline that waits out its watchdog; stopping the suite";
    say("SLOW " + shape + " " + std::to_string(dt) + " s (limit " + std::to_string(limit_s) + " s): stopping");
    return false;
  }
  say("ran  " + std::to_string(dt) + " s kernel " + r.kernel);
  return true;
}

/// The schedule the suites run (FLATATTN_CUDA_SM90_WS's value): FLATATTN_TEST_WS_SCHEDULE (1, 2 or 3), else
/// FLATATTN_CUDA_SM90_WS as the process started with it (`FLATATTN_CUDA_SM90_WS=2 test_cuda
/// --gtest_filter='CudaSm90Ws.*'`), default 1. Read once before main: the tests' ScopedWs changes the variable.
std::string read_schedule() {
  for (const char* var : {"FLATATTN_TEST_WS_SCHEDULE", "FLATATTN_CUDA_SM90_WS"}) {
    const char* s = std::getenv(var);
    if (s != nullptr && (std::string(s) == "1" || std::string(s) == "2" || std::string(s) == "3")) return s;
  }
  return "1";
}
const std::string g_schedule = read_schedule();
const char* schedule() { return g_schedule.c_str(); }

/// Whether this build has a Flash forward instance that serves the case's variant, dtype and head dim
/// (FLATATTN_VARIANTS / FLATATTN_HDIMS narrow the build; scripts/ws_probe.sh builds the plain variant only):
/// the cases of a variant or head dim that is not built are skipped, not failed.
bool built_for(const Case& c) {
  const bool soft = c.options.softcap > 0.f;
  const VariantId v = c.options.dropout_p > 0.f ? (soft ? VariantId::dropout_softcap : VariantId::dropout)
                      : soft                    ? VariantId::softcap
                      : c.alibi != 0            ? VariantId::alibi
                                                : VariantId::plain;
  for (const cuda::FwdInstance& in : cuda::fwd_instances())
    if (in.dataflow == Dataflow::flash && in.dtype == c.dtype && in.variant == v && in.d >= c.d) return true;
  return false;
}

/// check_case, and that the warp-specialized kernel ran it whenever the sm90 family did (a build without the
/// sm90 instance of a dtype / head dim runs the sm80 family: judged, not counted). Returns whether it ran.
bool check_ws(CaseTensors& t, std::uint64_t seed, const char* what, double limit_s = 2.0) {
  if (!built_for(t.c)) {
    say(std::string("skip ") + what + " [" + t.c.name() + "]: no instance built for it");
    return false;
  }
  const unsigned long long before = cuda::sm90_ws_launches();
  Report r;
  if (!timed_run(t, r, what, limit_s)) return false;
  const bool failed_before = ::testing::Test::HasFailure();
  const auto t0 = std::chrono::steady_clock::now();
  const std::string detail = judge_forward(t, r, seed, what);
  say((::testing::Test::HasFailure() && !failed_before ? "BAD  " : "ok   ") + detail + " (oracle " +
      std::to_string(seconds_since(t0)) + " s)");
  const bool sm90 = r.kernel.find("sm90") != std::string::npos;
  EXPECT_EQ(sm90, r.kernel.find("_ws") != std::string::npos) << what << " [" << t.c.name() << "] kernel " << r.kernel;
  // The persistent kernel ("_p", launch_ws.cuh) ran it iff ws_persistent_dense says so, the launcher's own decision:
  // FLATATTN_CUDA_SM90_WS_PERSISTENT=1, or "rule" (and unset: the default chooser) and the hand rule takes the call, or
  // "model" and the cost model picks it
  // (kernel head dim from the name's "_d<D>_", the case's shape and mask).
  // The name without Report's note after it (e.g. " (D=40 zero-padded)": a padded head dim runs the D = 64 kernel).
  const std::string name = r.kernel.substr(0, r.kernel.find(' '));
  auto tail_is = [&](const std::string& tail) {
    return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (sm90 && name.find("_sparse") != std::string::npos) {  // block lists: the sparse kernel's own grid switch
    EXPECT_EQ(tail_is("_sparse_p"), cuda::ws_persistent_sparse_for(cuda::sm90_ws_persistent()))
        << what << " [" << t.c.name() << "] kernel " << r.kernel;
  } else if (sm90) {
    const bool p = tail_is("_p");
    const int mode = cuda::sm90_ws_persistent();
    const std::size_t at = r.kernel.find("_d");
    const int kd = at == std::string::npos ? 0 : std::atoi(r.kernel.c_str() + at + 2);
    const cuda::Workload w{t.c.batch, t.c.hq, t.c.hkv, t.c.nq, t.c.nk, kd, t.c.dtype, mask_spec(t.c.options)};
    const bool want = cuda::ws_persistent_dense(mode, cuda::device_info(0), w);
    EXPECT_EQ(p, want) << what << " [" << t.c.name() << "] kernel " << r.kernel << " (persistent mode " << mode << ")";
  }
  EXPECT_EQ(cuda::sm90_ws_launches(), before + (sm90 ? 1 : 0))
      << what << " [" << t.c.name() << "] kernel " << r.kernel << ": the warp-specialized kernel did not run (seed "
      << seed << ")";
  return sm90;
}

/// The bench's shape (B 1, N = Nq = Nk, Hq = Hkv = h, head dim d, non-causal) on the GPU, judged on `rows`
/// sampled query rows of every head: the oracle runs on a case of those rows against all the keys (exact for a
/// non-causal call: a row's output depends on its own query only). Runs the default sm90 kernel on the same
/// tensors too, judged the same way, so a failure of the warp-specialized kernel is not the harness's.
void check_bench_shape(DType dt, std::int64_t n, std::int64_t h, std::int64_t d, int rows, std::uint64_t seed,
                       bool strided) {
  Case c;
  c.strided = strided;  // (B, H, N, D) storage like bench_fwd's (rows padded by 8 elements)
  c.dtype = dt;
  c.batch = 1, c.nq = n, c.nk = n, c.hq = h, c.hkv = h, c.d = d;
  c.options.return_lse = true;
  c.options.dataflow = Dataflow::flash;
  if (!built_for(c)) {
    say("skip bench shape [" + c.name() + "]: no instance built for it");
    return;
  }
  CaseTensors t = make_case(c, seed);

  // rows: the first and last, the tile boundaries around 128 and the middle, and random ones
  std::mt19937_64 rng(seed ^ 7);
  std::vector<std::int64_t> pick = {0, 127, 128, n / 2, n - 1};
  while (static_cast<int>(pick.size()) < rows) pick.push_back(static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(n)));
  std::sort(pick.begin(), pick.end());
  pick.erase(std::unique(pick.begin(), pick.end()), pick.end());
  const auto r = static_cast<std::int64_t>(pick.size());
  Case cs = c;
  cs.nq = r;
  CaseTensors sub = make_case(cs, seed ^ 9);
  sub.k = t.k;
  sub.v = t.v;
  for (std::int64_t i = 0; i < r; ++i)
    for (std::int64_t e = 0; e < h * d; ++e) sub.q.set(i * h * d + e, t.q.at(pick[static_cast<std::size_t>(i)] * h * d + e));
  const auto t_oracle = std::chrono::steady_clock::now();
  const ForwardOracle o = oracle_forward(sub);
  say("oracle on " + std::to_string(r) + " rows x " + std::to_string(h) + " heads: " + std::to_string(seconds_since(t_oracle)) + " s");

  for (const char* ws : {schedule(), "0"}) {
    const ScopedWs scoped(ws);
    const std::string what = std::string("bench shape, FLATATTN_CUDA_SM90_WS=") + ws;
    t.out.poison();
    t.lse.poison();
    const unsigned long long before = cuda::sm90_ws_launches();
    Report rep;
    if (!timed_run(t, rep, what, 10.0)) return;
    EXPECT_EQ(cuda::sm90_ws_launches(), before + (std::string(ws) == "0" ? 0 : 1)) << what << ": kernel " << rep.kernel;
    HostTensor out = HostTensor::make(dt, {1, r, h, d});
    HostTensor lse = HostTensor::make(DType::f32, {1, h, r});
    for (std::int64_t i = 0; i < r; ++i) {
      const std::int64_t row = pick[static_cast<std::size_t>(i)];
      for (std::int64_t e = 0; e < h * d; ++e) out.set(i * h * d + e, t.out.at(row * h * d + e));
      for (std::int64_t hh = 0; hh < h; ++hh) lse.set(hh * r + i, t.lse.at(hh * n + row));
    }
    const Verdict v = judge(out, o.out, &o.naive_out, dt);
    const Verdict lv = judge_lse(lse, o.lse, lse_tolerance(c.input_sd, o.lse, true));
    EXPECT_TRUE(std::isfinite(v.bound)) << what << ": the yardstick is not finite";
    EXPECT_TRUE(v.pass) << what << " [" << c.name() << "] kernel " << rep.kernel << " (seed " << seed << "): out "
                        << v.detail();
    EXPECT_TRUE(lv.pass) << what << " [" << c.name() << "] kernel " << rep.kernel << ": lse " << lv.detail();
    say(std::string(v.pass && lv.pass ? "ok   " : "BAD  ") + "out " + v.detail() + "; lse " + lv.detail());
  }
}

/// The bench's causal shape (B 1, N 16384, Hq = Hkv = 16, D 128): the warp-specialized kernel against the default
/// sm90 kernel on the same tensors (not the oracle: sampled rows change a causal problem). Prints the largest
/// difference, fails on non-finite outputs or a difference far beyond bf16 rounding of O (|O| <= max |V| ~ 5).
void compare_causal_bench_shape(std::uint64_t seed) {
  Case c;
  c.dtype = DType::bf16;
  c.batch = 1, c.nq = 16384, c.nk = 16384, c.hq = 16, c.hkv = 16, c.d = 128;
  c.options.causal = true;
  c.options.return_lse = true;
  c.options.dataflow = Dataflow::flash;
  if (!built_for(c)) {
    say("skip causal bench shape [" + c.name() + "]: no instance built for it");
    return;
  }
  CaseTensors t = make_case(c, seed);
  std::vector<double> ref;
  for (const char* ws : {"0", schedule()}) {
    const ScopedWs scoped(ws);
    const std::string what = std::string("causal bench shape, FLATATTN_CUDA_SM90_WS=") + ws;
    t.out.poison();
    Report rep;
    if (!timed_run(t, rep, what, 10.0)) return;
    if (std::string(ws) == "0") {
      ref.resize(static_cast<std::size_t>(t.out.numel()));
      for (std::int64_t i = 0; i < t.out.numel(); ++i) ref[static_cast<std::size_t>(i)] = t.out.at(i);
      continue;
    }
    double worst = 0;
    std::int64_t at = 0, nonfinite = 0;
    for (std::int64_t i = 0; i < t.out.numel(); ++i) {
      const double x = t.out.at(i);
      if (!std::isfinite(x)) {
        ++nonfinite;
        continue;
      }
      const double e = std::abs(x - ref[static_cast<std::size_t>(i)]);
      if (e > worst) worst = e, at = i;
    }
    const std::int64_t row = at / (c.hq * c.d);
    say(std::string(nonfinite == 0 && worst < 0.05 ? "ok   " : "BAD  ") + "vs the default sm90 kernel: max |diff| " +
        std::to_string(worst) + " at query row " + std::to_string(row) + ", " + std::to_string(nonfinite) + " non-finite");
    EXPECT_EQ(nonfinite, 0) << what << " (seed " << seed << ")";
    EXPECT_LT(worst, 0.05) << what << ": largest difference from the default sm90 kernel at query row " << row
                           << " (seed " << seed << ")";
  }
}

}  // namespace

// First of all: the smallest whole tile (one CTA, one key block), D = 128, 64, then 256 (two 64-key blocks).
TEST(CudaSm90Ws, Tiny) {
  REQUIRE_SM90_WS();
  const ScopedWs ws(schedule());
  say(std::string("schedule ") + schedule());
  const std::uint64_t seed = seed_for("Sm90WsTiny");
  std::mt19937_64 rng(seed);
  for (std::int64_t d : {128, 64, 256}) {
    Case c = ws_base_case(DType::bf16, 128, 128, d);
    c.batch = 1, c.hq = 1, c.hkv = 1;
    CaseTensors t = make_case(c, rng);
    check_ws(t, seed, "ws tiny");
    if (::testing::Test::HasFailure()) return;
  }
}

// The bench's shapes (bench_fwd, B N = 16k, Hq D = 2048, bf16, non-causal, N = 16384): are the fast results right?
TEST(CudaSm90Ws, BenchShape) {
  REQUIRE_SM90_WS();
  const std::uint64_t seed = seed_for("Sm90WsBenchShape");
  check_bench_shape(DType::bf16, 16384, 16, 128, 16, seed, false);
  if (::testing::Test::HasFailure()) return;
  check_bench_shape(DType::bf16, 16384, 32, 64, 8, seed ^ 1, true);
  if (::testing::Test::HasFailure()) return;
  check_bench_shape(DType::bf16, 16384, 8, 256, 8, seed ^ 3, false);
  if (::testing::Test::HasFailure()) return;
  compare_causal_bench_shape(seed ^ 2);
}

TEST(CudaSm90Ws, AgainstOracle) {
  REQUIRE_SM90_WS();
  const ScopedWs ws(schedule());
  say(std::string("schedule ") + schedule());
  const std::uint64_t seed = seed_for("Sm90WsAgainstOracle");
  std::mt19937_64 rng(seed);
  int ran = 0, total = 0;
  for (DType dt : {DType::bf16, DType::f16}) {
    int i = 0;
    for (const Case& c : ws_cases(dt)) {
      if (dt == DType::f16 && i++ % 2 != 0) continue;  // f16: every other case (the oracle's runtime)
      CaseTensors t = make_case(c, rng);
      ran += check_ws(t, seed, "ws");
      ++total;
      if (::testing::Test::HasFailure()) return;  // one broken pipeline fails every case: stop at the first
    }
  }
  say(std::to_string(ran) + " of " + std::to_string(total) + " cases ran the warp-specialized kernel");
  EXPECT_GT(ran, 0) << "no case reached the warp-specialized kernel";
}

TEST(CudaSm90Ws, RandomSweep) {
  REQUIRE_SM90_WS();
  const ScopedWs ws(schedule());
  const std::uint64_t seed = seed_for("Sm90WsRandomSweep");
  std::mt19937_64 rng(seed);
  int ran = 0;
  int total = 0;
  for (int i = 0; i < 48; ++i) {
    const DType dt = i % 2 ? DType::bf16 : DType::f16;
    Case c = random_case(rng, dt, 700);  // varlen and softcap included
    c.options.dataflow = Dataflow::flash;
    const std::int64_t dims[] = {40, 64, 104, 128, 200, 256};
    c.d = dims[i % 6];
    if (!ws_serves(c)) continue;  // no query row at all: nothing launches
    CaseTensors t = make_case(c, rng);
    ran += check_ws(t, seed, "ws random");
    ++total;
    if (::testing::Test::HasFailure()) return;
  }
  say(std::to_string(ran) + " of " + std::to_string(total) + " random cases ran the warp-specialized kernel");
  EXPECT_GT(ran, 0) << "no random case reached the warp-specialized kernel";
}

// Schedules 1 and 3 (and 2 when FLATATTN_TEST_WS_SCHEDULE=2) on a few cases that wrap the ring, cross the tails
// and mask (the suites above run one).
TEST(CudaSm90Ws, AllSchedules) {
  REQUIRE_SM90_WS();
  const std::uint64_t seed = seed_for("Sm90WsAllSchedules");
  std::mt19937_64 rng(seed);
  for (const char* sched : {"1", "3", "2"}) {
    // Ping-pong (2) only where the run is for it: a named-barrier mismatch hangs outside the watchdog's reach,
    // so the runs of schedules 1 and 3 must not depend on it.
    if (std::string(sched) == "2" && std::string(schedule()) != "2") continue;
    const ScopedWs ws(sched);
    for (std::int64_t d : {64, 128, 256}) {
      std::vector<Case> cases = {ws_base_case(DType::bf16, 1, 1, d), ws_base_case(DType::bf16, 129, 1300, d), ws_base_case(DType::f16, 700, 513, d)};
      cases[2].options.causal = true;
      Case tl = ws_base_case(DType::bf16, 300, 900, d);
      tl.options.causal = true;
      tl.options.causal_align = CausalAlign::top_left;
      cases.push_back(tl);
      const std::vector<Case> vl = ws_varlen_cases(DType::bf16, d);
      cases.push_back(vl[0]);  // empty and 1-row sequences
      cases.push_back(vl[3]);  // causal bottom-right, crossing sequences
      for (const Case& c : cases) {
        CaseTensors t = make_case(c, rng);
        check_ws(t, seed, (std::string("ws schedule ") + sched).c_str());
        if (::testing::Test::HasFailure()) return;
      }
    }
  }
}

// The small representative set the GPU session runs under compute-sanitizer (memcheck, racecheck: its filter is
// 'Cuda*.SanitizerSet'): the ring wrapped (D = 128, 600 keys = 5 blocks in 2 slots), D = 256 causal (64-key
// blocks), varlen at D = 64 and 256 with empty and 1-row sequences, softcap. No time limit (the tools slow the
// kernels many times over; the watchdog's 4 s per barrier wait still bounds a hang).
TEST(CudaSm90Ws, SanitizerSet) {
  REQUIRE_SM90_WS();
  const ScopedWs ws(schedule());
  const std::uint64_t seed = seed_for("Sm90WsSanitizerSet");
  std::mt19937_64 rng(seed);
  std::vector<Case> cases = {ws_base_case(DType::bf16, 130, 600, 128), ws_base_case(DType::bf16, 140, 300, 256)};
  cases[1].options.causal = true;
  for (std::int64_t d : {64, 256}) {
    Case c = ws_base_case(DType::bf16, 0, 0, d);
    c.varlen = true;
    c.batch = 4;
    c.seqlens_q = {0, 1, 70, 129};
    c.seqlens_k = {3, 1, 0, 200};
    cases.push_back(c);
  }
  Case sc = ws_base_case(DType::f16, 90, 150, 64);
  sc.options.softcap = 30.f;
  cases.push_back(sc);
  for (const Case& c : cases) {
    if (!built_for(c)) continue;
    CaseTensors t = make_case(c, rng);
    const unsigned long long before = cuda::sm90_ws_launches();
    const Report r = check_case(t, seed, "ws sanitizer");
    const bool sm90 = r.kernel.find("sm90") != std::string::npos;
    EXPECT_EQ(cuda::sm90_ws_launches(), before + (sm90 ? 1 : 0)) << "[" << c.name() << "] kernel " << r.kernel;
  }
}

// Nk = 0: O = 0 and LSE = -inf (attention.h), the tensor maps built without the (empty) key tensors; the same
// for a varlen call whose sequences all have no keys (total_k = 0).
TEST(CudaSm90Ws, NoKeys) {
  REQUIRE_SM90_WS();
  const ScopedWs ws(schedule());
  const std::uint64_t seed = seed_for("Sm90WsNoKeys");
  std::mt19937_64 rng(seed);
  for (auto [d, varlen] : {std::pair{64, false}, {128, false}, {256, false}, {64, true}, {256, true}}) {
    Case c = ws_base_case(DType::bf16, 50, 0, d);
    if (varlen) {
      c.varlen = true;
      c.batch = 3;
      c.seqlens_q = {50, 1, 130};
      c.seqlens_k = {0, 0, 0};
    }
    if (!built_for(c)) continue;
    CaseTensors t = make_case(c, rng);
    const unsigned long long before = cuda::sm90_ws_launches();
    Report r;
    if (!timed_run(t, r, "ws no keys", 2.0)) return;
    EXPECT_EQ(cuda::sm90_ws_launches(), before + (r.kernel.find("sm90") != std::string::npos ? 1 : 0)) << r.kernel;
    int bad = 0;
    for (std::int64_t i = 0; i < t.out.numel(); ++i) bad += t.out.at(i) != 0.0;
    for (std::int64_t i = 0; i < t.lse.numel(); ++i) bad += t.lse.at(i) != -std::numeric_limits<double>::infinity();
    EXPECT_EQ(bad, 0) << "[" << t.c.name() << "]: outputs not O = 0, LSE = -inf (kernel " << r.kernel << ")";
  }
}

// "0": the other sm90 kernel always. Unset: the cost model's pick (policy/heuristics.h choose_sm90_ws) for the
// plain call's shape, for the plain, softcap, ALiBi and dropout variants at a head dim policy/ws_policy.h lists;
// never for a variant it does not serve (the additive bias: no Error either).
// The model's picks at the ends of the measured range are the measured ones (docs/sm90_ws.md). At D = 256 the
// alternative is the sm80 family's kernel; forced, the warp-specialized kernel always runs.
TEST(CudaSm90Ws, PlannerPicksByTheModel) {
  REQUIRE_SM90_WS();
  const std::uint64_t seed = seed_for("Sm90WsPlanner");
  std::mt19937_64 rng(seed);
  const cuda::DeviceInfo& dev = cuda::device_info(0);
  // The measured grid's shapes (B*N = 16k, Hq*D = 2048: data/model/measured/h100-ours-sm90.json).
  auto model_picks = [&](std::int64_t n, int d) {
    const cuda::Workload w{16384 / n, 2048 / d, 2048 / d, n, n, d, DType::bf16, MaskSpec{}};
    return cuda::choose_sm90_ws(dev, w);
  };
  EXPECT_TRUE(model_picks(16384, 128)) << "D 128, N 16k: measured 1.41x faster on the warp-specialized kernel";
  EXPECT_FALSE(model_picks(256, 64)) << "D 64, N 256: measured 0.83x on the warp-specialized kernel";
  EXPECT_FALSE(model_picks(4096, 96)) << "D 96 has no warp-specialized kernel";
  EXPECT_TRUE(model_picks(2048, 256)) << "D 256, N 2k: measured 2.4x the sm80 family's kernel";
  struct Row {
    const char* value;
    std::int64_t nk, d;
    bool softcap;
    int alibi = 0;     ///< Case::alibi: 0 off, 1 slopes (Hq), 2 slopes (B, Hq)
    bool dropout = false;  ///< dropout p = 0.1: the plain call's pick, as the other variants (issue 15)
  };
  for (const Row& r : {Row{"0", 300, 128, false}, Row{"0", 4096, 128, false}, Row{nullptr, 300, 128, false},
                       Row{nullptr, 4096, 128, false}, Row{nullptr, 4096, 128, true}, Row{nullptr, 256, 64, false},
                       Row{nullptr, 256, 64, true}, Row{nullptr, 4096, 128, false, 1}, Row{nullptr, 256, 64, false, 2},
                       Row{nullptr, 4096, 128, false, 0, true}, Row{nullptr, 300, 128, false, 0, true},
                       Row{nullptr, 8192, 64, false, 0, true}, Row{nullptr, 2048, 256, false, 0, true},
                       Row{schedule(), 300, 64, false, 0, true}, Row{"0", 4096, 128, false, 0, true},
                       Row{nullptr, 8192, 64, false},
                       Row{nullptr, 2048, 256, false}, Row{nullptr, 2048, 256, true}, Row{nullptr, 2048, 256, false, 1},
                       Row{"0", 2048, 256, false}, Row{schedule(), 300, 256, false}, Row{schedule(), 300, 256, true}}) {
    const ScopedWs ws(r.value);
    Case c = ws_base_case(DType::bf16, 200, r.nk, r.d);
    if (r.softcap) c.options.softcap = 30.f;
    c.alibi = r.alibi;
    if (r.dropout) c.options.dropout_p = 0.1f;
    if (!built_for(c)) continue;
    CaseTensors t = make_case(c, rng);
    const cuda::Workload w{c.batch, c.hq, c.hkv, 200, r.nk, static_cast<int>(r.d), DType::bf16, MaskSpec{}};
    const bool forced = r.value != nullptr && std::string(r.value) != "0";
    // Dropout is not served at D = 256 (80-key blocks, src/cuda/ws_route.h): the sm80 family runs it, forced or not.
    const VariantId var = r.dropout   ? VariantId::dropout
                          : r.softcap ? VariantId::softcap
                          : r.alibi   ? VariantId::alibi
                                      : VariantId::plain;
    const bool serves = cuda::ws_serves_variant(var, static_cast<int>(r.d));
    const bool ws_expected = serves && (forced || (r.value == nullptr && cuda::ws_planner_row(static_cast<int>(r.d)) &&
                                                   cuda::choose_sm90_ws(dev, w)));
    const unsigned long long before = cuda::sm90_ws_launches();
    const Report rep = check_case(t, seed, "ws planner");
    // A build without the sm90 instance of this D (FLATATTN_HDIMS) runs the sm80 family: nothing to count.
    if (rep.kernel.find("sm90") == std::string::npos && r.d == 256 && ws_expected) continue;
    EXPECT_EQ(cuda::sm90_ws_launches(), before + (ws_expected ? 1 : 0))
        << "FLATATTN_CUDA_SM90_WS=" << (r.value ? r.value : "(unset)") << ", Nk " << r.nk << ", D " << r.d
        << (r.softcap ? ", softcap" : "") << (r.alibi ? ", ALiBi" : "") << (r.dropout ? ", dropout" : "") << " (ran "
        << rep.kernel << ")";
  }
}

// Dropout (issue 15): the forward applies exactly dropout_mask()'s bits (a probe case, src/check/dropout_probe.h:
// O shows the mask), at D = 64, 128, 256, bf16 and f16, at the sequence's start and at a position in a longer
// sequence (dropout_row0/col0), on the forced schedule; the launch counter shows the kernel ran.
TEST(CudaSm90Ws, DropoutAppliesTheMaskOfDropoutMask) {
  REQUIRE_SM90_WS();
  const ScopedWs ws(schedule());
  const std::uint64_t seed = seed_for("Sm90WsDropoutMask");
  std::mt19937_64 rng(seed);
  constexpr std::int64_t kB = 2, kH = 2;
  int ran = 0;
  for (DType dt : {DType::bf16, DType::f16})
    for (std::int64_t n : {64, 128, 256})
      for (auto [p, r0, c0] : {std::tuple{0.17f, 0, 0}, std::tuple{0.5f, 0, 0}, std::tuple{0.3f, 777, 4096 + 64}}) {
        Options o;
        o.dropout_p = p;
        o.dropout_seed = rng();
        o.dropout_offset = rng();
        o.dropout_row0 = r0, o.dropout_col0 = c0;
        o.return_lse = true;
        o.dataflow = Dataflow::flash;
        CaseTensors t = dropout_probe_case(dt, kB, kH, n, o);
        if (!built_for(t.c)) continue;
        std::vector<std::uint8_t> want(kB * kH * n * n);
        dropout_mask(want.data(), Device::cpu(), kB, kH, n, n, o);
        const unsigned long long before = cuda::sm90_ws_launches();
        Report r;
        const std::string what = "ws dropout mask p=" + std::to_string(p) + " at (" + std::to_string(r0) + ", " +
                                 std::to_string(c0) + ")";
        if (!timed_run(t, r, what, 2.0)) return;
        if (r.kernel.find("sm90") == std::string::npos) continue;  // no sm90 instance of this D / dtype
        ++ran;
        EXPECT_EQ(cuda::sm90_ws_launches(), before + 1) << what << " [" << t.c.name() << "] kernel " << r.kernel;
        EXPECT_EQ(read_dropout_mask(t.out, kB, kH, n, p, false, 0.02), want)
            << what << " [" << t.c.name() << "] kernel " << r.kernel << " (seed " << seed << ")";
      }
  EXPECT_GT(ran, 0) << "no probe reached the warp-specialized kernel";
}

// What it does not serve yet (the additive bias) is refused with an Error naming the switch, and nothing runs
// (where an sm90 instance would have served it).
TEST(CudaSm90Ws, Refusals) {
  REQUIRE_SM90_WS();
  const ScopedWs ws("1");
  const std::uint64_t seed = seed_for("Sm90WsRefusals");
  std::mt19937_64 rng(seed);
  std::vector<Case> refused;
  for (std::int64_t d : {128, 64}) {
    Case b = ws_base_case(DType::bf16, 100, 120, d);
    b.bias_dims = "bhq";
    refused.push_back(b);
  }
  for (const Case& c : refused) {
    CaseTensors t = make_case(c, rng);
    const unsigned long long before = cuda::sm90_ws_launches();
    try {
      // A build without the sm90 instance of the case runs the sm80 family: no refusal due.
      const Report r = run_on_gpu(t);
      EXPECT_EQ(r.kernel.find("sm90"), std::string::npos)
          << "[" << c.name() << "] ran " << r.kernel << "; expected a refusal naming FLATATTN_CUDA_SM90_WS";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), Error::Kind::unsupported) << e.what();
      // A build without the variant's instances at all (FLATATTN_VARIANTS=plain, scripts/ws_probe.sh) refuses it
      // before any family is chosen: no refusal of the switch due either.
      if (std::string(e.what()).find("no built instance") == std::string::npos) {
        EXPECT_NE(std::string(e.what()).find("FLATATTN_CUDA_SM90_WS"), std::string::npos) << e.what();
      }
    }
    EXPECT_EQ(cuda::sm90_ws_launches(), before) << c.name();
  }
}

// The tensor maps' own checks (no GPU needed: they run before the driver is asked): what the copy engine
// cannot address is refused with an Error naming the operand, the value and the limit.
TEST(CudaSm90Ws, TileMapChecks) {
#ifndef FLATATTN_TEST_SM90
  GTEST_SKIP() << "the sm90 family is not built";
#else
  alignas(256) static unsigned char buf[4096];
  struct Bad {
    const void* base;
    std::int64_t s_row, s_head;
    int box_rows;
    const char* expect;
  } bad[] = {
      {buf + 8, 128, 64, 128, "16-byte"},    // misaligned base
      {buf, 100, 64, 128, "stride 100"},     // row stride not a multiple of 8 elements
      {buf, 128, 36, 128, "stride 36"},      // head stride likewise
      {buf, 128, 64, 300, "300 rows"},       // box taller than 256
  };
  for (const Bad& b : bad) {
    const std::string err = tile_map_error(b.base, 64, 10, 2, 1, b.s_row, b.s_head, 10 * 128, b.box_rows);
    EXPECT_NE(err.find(b.expect), std::string::npos) << "expected \"" << b.expect << "\" in: " << err;
    EXPECT_NE(err.find("k"), std::string::npos) << err;
  }
  // a size-1 batch dimension with a stride the copy engine would refuse is never stepped: not refused for it
  const std::string err = tile_map_error(buf, 64, 10, 2, 1, 128, 64, 3, 128);
  EXPECT_EQ(err.find("batch stride"), std::string::npos) << err;
#endif
}
