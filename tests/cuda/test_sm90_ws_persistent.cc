// The persistent warp-specialized forward (src/cuda/sm90/ws_fwd_persistent.cuh, ws_tile_scheduler.cuh), switched on
// for each test with FLATATTN_CUDA_SM90_WS_PERSISTENT=1 and forced with FLATATTN_CUDA_SM90_WS=<the suite's schedule>
// (FLATATTN_TEST_WS_SCHEDULE, else FLATATTN_CUDA_SM90_WS as the process got it, else 1; as test_sm90_ws.cc). Part of
// the CudaSm90Ws suite (the GPU session's filter 'CudaSm90Ws.*' runs these with the others; the others run the
// persistent kernel too when the process has FLATATTN_CUDA_SM90_WS_PERSISTENT=1: test_sm90_ws.cc check_ws asserts it).
//   PersistentAgainstOracle: per head dim two cases with more tiles than 3 x 132 SMs (non-causal; causal, where the
//     units are pairs of query blocks), causal in both alignments with Nq != Nk both ways (fully masked tiles: 0 key
//     blocks), a window with fully masked tiles,
//     varlen with empty and 1-row sequences and a sequence without keys, GQA, sinks, softcap, ALiBi, dropout -- each
//     against the fp64 oracle, three times with poisoned outputs: one CTA per SM, and the grid capped at 1 and at 5
//     CTAs (FLATATTN_SM90_WS_PERSISTENT_GRID), where each CTA walks many tiles (the ring's count and phases, the Q
//     tile's empty barrier, ping-pong's turns across tiles).
//   PersistentMatchesOneTile: larger causal and non-causal shapes, bitwise the outputs and LSE of the one-tile kernel
//     (the same per-tile arithmetic in the same order).
//   PersistentWalkCoversEveryTile (no GPU): the scheduler's walk takes every tile once, pairs balanced (the walk is
//     src/core/tile_walk.h, which the cost model walks too; tests/model/test_persistent.cc checks it without CUDA).
//   PersistentSwitch: "0" runs the one-tile kernel, "rule" the hand rule's thresholds (persistent here), a value other than
//     0/1/rule/auto and a bad grid cap are refused with an
//     Error naming the variable, block-sparse calls run the sparse kernel's persistent grid (..._sparse_p).
// Skipped where no sm_90 GPU runs the sm90 family.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "flatattn/error.h"
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/cuda/dispatch.h"
#include "src/cuda/family.h"
#include "src/cuda/policy/ws_tile.h"
#include "src/cuda/registry.h"
#include "src/cuda/sm90/ws_tile_scheduler.cuh"
#include "src/cuda/ws_route.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

bool sm90_runs() { return gpu_present() && cuda::path_info(0, DType::bf16).sm90_flash; }

#define REQUIRE_SM90_WS_P() \
  if (!sm90_runs()) GTEST_SKIP() << "no sm_90 GPU, the sm90 family is not built, or FLATATTN_CUDA_SM90=0"

/// The suite's schedule (test_sm90_ws.cc read_schedule): ping-pong (2) only when the run asks for it.
const char* schedule() {
  static const std::string s = [] {
    for (const char* var : {"FLATATTN_TEST_WS_SCHEDULE", "FLATATTN_CUDA_SM90_WS"}) {
      const char* v = std::getenv(var);
      if (v != nullptr && (std::string(v) == "1" || std::string(v) == "2" || std::string(v) == "3")) return std::string(v);
    }
    return std::string("1");
  }();
  return s.c_str();
}

void say(const std::string& line) { std::cout << "[ws-p] " << line << std::endl; }

/// Whether this build has the case's Flash forward instance (test_sm90_ws.cc built_for).
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

/// B 3, Hq 48, Hkv 12 (GQA 4:1): 144 (head, sequence) pairs, so 3 query blocks or more make > 396 tiles.
Case many(DType dt, std::int64_t nq, std::int64_t nk, std::int64_t d) {
  Case c = small_case(dt, nq, nk, d);
  c.batch = 3, c.hq = 48, c.hkv = 12;
  c.options.dataflow = Dataflow::flash;
  return c;
}

Case varlen(DType dt, std::int64_t d, std::vector<std::int32_t> q, std::vector<std::int32_t> k) {
  Case c = small_case(dt, 0, 0, d);
  c.options.dataflow = Dataflow::flash;
  c.hq = 8, c.hkv = 2;
  c.varlen = true;
  c.batch = static_cast<std::int64_t>(q.size());
  c.seqlens_q = std::move(q);
  c.seqlens_k = std::move(k);
  return c;
}

/// B 2, Hq 8, Hkv 2: the cheaper cases (the capped grids make their CTAs walk many tiles all the same).
Case few(DType dt, std::int64_t nq, std::int64_t nk, std::int64_t d) {
  Case c = many(dt, nq, nk, d);
  c.batch = 2, c.hq = 8, c.hkv = 2;
  return c;
}

std::vector<Case> persistent_cases(std::int64_t d) {
  const DType dt = DType::bf16;
  std::vector<Case> v;
  v.push_back(many(dt, 400, 400, d));  // non-causal, > 396 tiles: one tile per unit
  {
    Case c = many(dt, 530, 400, d);  // causal bottom-right, > 396 tiles (pairs): rows < 130 see no key (0 blocks)
    c.options.causal = true;
    v.push_back(c);
  }
  for (CausalAlign align : {CausalAlign::bottom_right, CausalAlign::top_left}) {
    for (auto [nq, nk] : {std::pair{400, 530}, {530, 400}}) {
      Case c = few(dt, nq, nk, d);
      c.options.causal = true;
      c.options.causal_align = align;
      v.push_back(c);
    }
  }
  {  // a window with fully masked tiles (bottom-right, Nq > Nk: rows < 310 see no key)
    Case w = few(dt, 530, 200, d);
    w.options.window.left = 20;
    w.options.window.right = 5;
    v.push_back(w);
  }
  {  // varlen: empty and 1-row sequences, a sequence without keys (tiles of 0 blocks), crossing tiles; causal both ways
    Case c = varlen(dt, d, {0, 1, 700, 129, 1, 0, 450, 64}, {5, 1, 650, 0, 300, 0, 460, 64});
    v.push_back(c);
    for (CausalAlign align : {CausalAlign::bottom_right, CausalAlign::top_left}) {
      c.options.causal = true;
      c.options.causal_align = align;
      v.push_back(c);
    }
  }
  {  // sinks and softcap, causal (pairs); ALiBi; dropout (its own instance; not at D = 256, ws_route.h)
    Case s = few(dt, 300, 300, d);
    s.hkv = 8;
    s.sinks = true;
    s.options.softcap = 30.f;
    s.options.causal = true;
    v.push_back(s);
    Case a = few(dt, 330, 300, d);
    a.alibi = 2;
    a.options.causal = true;
    v.push_back(a);
    Case p = few(dt, 260, 300, d);
    p.options.dropout_p = 0.2f;
    p.options.dropout_seed = 0x1234567u + static_cast<std::uint64_t>(d);
    p.options.dropout_offset = 77;
    p.options.causal = true;
    v.push_back(p);
  }
  return v;
}

/// One run of the case's inputs with poisoned outputs, judged against o; the persistent kernel must be the one that
/// ran (the Report's "_p" and the launch counter). Returns false on a failure.
bool run_judged(CaseTensors& t, const ForwardOracle& o, std::uint64_t seed, const std::string& what) {
  t.out.poison();
  t.lse.poison();
  const unsigned long long before = cuda::sm90_ws_launches();
  say("run  " + what + " [" + t.c.name() + "]");
  const Report r = check_case(t, o, seed, what.c_str());
  say("ran  kernel " + r.kernel);
  if (r.kernel.find("sm90") == std::string::npos) return !::testing::Test::HasFailure();  // no sm90 instance of it
  EXPECT_TRUE(ends_with(r.kernel, "_p")) << what << " [" << t.c.name() << "] ran " << r.kernel;
  EXPECT_EQ(cuda::sm90_ws_launches(), before + 1) << what << " [" << t.c.name() << "] kernel " << r.kernel;
  return !::testing::Test::HasFailure();
}

}  // namespace

TEST(CudaSm90Ws, PersistentAgainstOracle) {
  REQUIRE_SM90_WS_P();
  const ScopedWs ws(schedule());
  const ScopedEnv on("FLATATTN_CUDA_SM90_WS_PERSISTENT", "1");
  const std::uint64_t seed = seed_for("Sm90WsPersistentAgainstOracle");
  std::mt19937_64 rng(seed);
  int ran = 0;
  for (std::int64_t d : {64, 128, 256}) {
    for (const Case& c : persistent_cases(d)) {
      if (!built_for(c)) continue;
      if (c.options.dropout_p > 0.f && !cuda::ws_serves_variant(VariantId::dropout, static_cast<int>(d))) continue;
      CaseTensors t = make_case(c, rng);
      const ForwardOracle o = oracle_forward(t);
      for (const char* grid : {static_cast<const char*>(nullptr), "1", "5"}) {
        const ScopedEnv cap("FLATATTN_SM90_WS_PERSISTENT_GRID", grid);
        const std::string what = std::string("ws persistent schedule ") + schedule() + " grid " + (grid ? grid : "SMs");
        if (!run_judged(t, o, seed, what)) return;  // one broken walk fails every case: stop at the first
        ++ran;
      }
    }
  }
  EXPECT_GT(ran, 0) << "no case reached the persistent kernel";
}

TEST(CudaSm90Ws, PersistentMatchesOneTile) {
  REQUIRE_SM90_WS_P();
  const ScopedWs ws(schedule());
  const std::uint64_t seed = seed_for("Sm90WsPersistentMatchesOneTile");
  std::mt19937_64 rng(seed);
  struct Shape {
    std::int64_t b, h, nq, nk, d;
    bool causal;
    CausalAlign align;
  };
  for (const Shape& s : {Shape{4, 16, 2048, 2048, 128, true, CausalAlign::bottom_right},
                         Shape{16, 16, 1024, 1500, 64, true, CausalAlign::top_left},
                         Shape{4, 16, 1500, 1024, 64, true, CausalAlign::bottom_right},
                         Shape{4, 32, 777, 777, 128, false, CausalAlign::bottom_right},
                         Shape{4, 16, 1000, 1000, 256, true, CausalAlign::bottom_right}}) {
    Case c = small_case(DType::bf16, s.nq, s.nk, s.d);
    c.batch = s.b, c.hq = s.h, c.hkv = s.h / 4;
    c.options.dataflow = Dataflow::flash;
    c.options.causal = s.causal;
    c.options.causal_align = s.align;
    if (!built_for(c)) continue;
    CaseTensors t = make_case(c, rng);
    HostTensor out, lse;  // the one-tile kernel's, storage bytes included (the padding stays poisoned in both)
    for (const char* p : {"0", "1"}) {
      const ScopedEnv env("FLATATTN_CUDA_SM90_WS_PERSISTENT", p);
      t.out.poison();
      t.lse.poison();
      const Report r = run_on_gpu(t);
      say(std::string("ran  persistent=") + p + " [" + c.name() + "] kernel " + r.kernel);
      if (r.kernel.find("sm90") == std::string::npos) break;  // no sm90 instance of this D
      ASSERT_EQ(ends_with(r.kernel, "_p"), std::string(p) == "1") << "[" << c.name() << "] ran " << r.kernel;
      if (std::string(p) == "0") {
        out = t.out, lse = t.lse;
        continue;
      }
      std::int64_t diff = 0, first = -1;
      for (std::int64_t i = 0; i < t.out.numel(); ++i) {
        const double a = t.out.at(i), b = out.at(i);
        if (!(a == b || (std::isnan(a) && std::isnan(b)))) diff += 1, first = first < 0 ? i : first;
      }
      EXPECT_TRUE(t.out.storage == out.storage)
          << "[" << c.name() << "] out differs from the one-tile kernel's: " << diff << " elements, the first at "
          << first << " (seed " << seed << ")";
      EXPECT_TRUE(t.lse.storage == lse.storage) << "[" << c.name() << "] lse differs from the one-tile kernel's";
    }
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(CudaSm90Ws, PersistentSwitch) {
  REQUIRE_SM90_WS_P();
  const ScopedWs ws(schedule());
  const std::uint64_t seed = seed_for("Sm90WsPersistentSwitch");
  std::mt19937_64 rng(seed);
  Case c = small_case(DType::bf16, 300, 300, 128);
  c.options.dataflow = Dataflow::flash;
  if (!built_for(c)) GTEST_SKIP() << "no D = 128 bf16 instance built";
  CaseTensors t = make_case(c, rng);
  {
    const ScopedEnv off("FLATATTN_CUDA_SM90_WS_PERSISTENT", "0");
    const Report r = check_case(t, seed, "ws persistent off");
    EXPECT_FALSE(ends_with(r.kernel, "_p")) << r.kernel;
  }
  {  // "rule": the hand rule's thresholds (policy/ws_policy.h kWsPersistentRule); D = 128, Nk = 300 is within them
    const ScopedEnv rule("FLATATTN_CUDA_SM90_WS_PERSISTENT", "rule");
    const Report r = check_case(t, seed, "ws persistent rule");
    EXPECT_TRUE(ends_with(r.kernel, "_p")) << r.kernel;
  }
  for (auto [var, value] : {std::pair{"FLATATTN_CUDA_SM90_WS_PERSISTENT", "yes"}, {"FLATATTN_CUDA_SM90_WS_PERSISTENT", "2"},
                            {"FLATATTN_SM90_WS_PERSISTENT_GRID", "0"}, {"FLATATTN_SM90_WS_PERSISTENT_GRID", "4x"}}) {
    const ScopedEnv on("FLATATTN_CUDA_SM90_WS_PERSISTENT", std::string(var) == "FLATATTN_SM90_WS_PERSISTENT_GRID" ? "1" : value);
    const ScopedEnv bad(var, value);
    const unsigned long long before = cuda::sm90_ws_launches();
    try {
      const Report r = run_on_gpu(t);
      ADD_FAILURE() << var << "=" << value << ": ran " << r.kernel << "; expected an Error naming " << var;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), Error::Kind::invalid_argument) << e.what();
      EXPECT_EQ(e.argument(), var) << e.what();
    }
    EXPECT_EQ(cuda::sm90_ws_launches(), before) << var << "=" << value << ": a kernel ran";
  }
  {  // =1 sends block-sparse calls to the sparse kernel's persistent grid too (the same kernel: "..._sparse_p")
    const ScopedEnv on("FLATATTN_CUDA_SM90_WS_PERSISTENT", "1");
    Case s = small_case(DType::bf16, 512, 512, 128);
    s.options.dataflow = Dataflow::flash;
    s.sparse.block_q = 128;
    s.sparse.block_kv = 128;
    s.options.causal = true;  // the band rule's partial blocks take the causal band
    CaseTensors ts = make_case(s, rng);
    const Report r = check_case(ts, seed, "ws persistent sparse");
    if (r.kernel.find("sm90") != std::string::npos) {
      EXPECT_TRUE(ends_with(r.kernel, "_sparse_p")) << r.kernel;
    }
  }
}

// The persistent kernel's walk (no GPU needed): every tile exactly once over the CTAs for single tiles and causal
// pairs, odd and even query blocks per head, grids smaller and larger than the units; a pair's two query blocks
// (common/tile_coord.cuh's order: block n_m - 1 - t % n_m) sum to n_m - 1 (the same key blocks under causal).
TEST(CudaSm90Ws, PersistentWalkCoversEveryTile) {
  for (int n_m = 1; n_m <= 12; ++n_m)
    for (int hb : {1, 2, 3, 7, 50})
      for (int sms : {1, 2, 5, 132})
        for (bool grows : {false, true}) {
          const int tiles = n_m * hb;
          const cuda::sm90::WsTileScheduler sch = cuda::sm90::WsTileScheduler::make(n_m, tiles, grows, sms);
          const int grid = sch.grid(sms);
          ASSERT_GE(grid, 1);
          ASSERT_LE(grid, sms);
          EXPECT_EQ(sch.pairs > 0, grows && n_m >= 2 && tiles >= 2 * sms);
          std::vector<int> seen(static_cast<std::size_t>(tiles), 0);
          for (int bx = 0; bx < grid; ++bx) {
            auto cur = sch.start(static_cast<unsigned>(bx));
            int prev = -1;
            for (int t; sch.next(cur, t, static_cast<unsigned>(grid));) {
              ASSERT_GE(t, 0);
              ASSERT_LT(t, tiles) << "n_m " << n_m << " hb " << hb << " sms " << sms;
              ++seen[static_cast<std::size_t>(t)];
              if (cur.part == 1) {
                prev = t;  // the first tile of a pair; the next one completes it
              } else if (prev >= 0) {
                EXPECT_EQ(prev / n_m, t / n_m) << "a pair spans two heads";
                EXPECT_EQ((n_m - 1 - prev % n_m) + (n_m - 1 - t % n_m), n_m - 1) << "n_m " << n_m;
                EXPECT_GT(n_m - 1 - prev % n_m, n_m - 1 - t % n_m) << "the heavier query block first";
                prev = -1;
              }
            }
          }
          for (int t = 0; t < tiles; ++t)
            ASSERT_EQ(seen[static_cast<std::size_t>(t)], 1)
                << "tile " << t << ", n_m " << n_m << " hb " << hb << " sms " << sms << " grows " << grows;
        }
}
