// The block-sparse walk of the warp-specialized sm90 forward (issue 16; sm90/ws_fwd_persistent.cuh ws_fwd_sparse_kernel,
// ws_fwd_mainloop.cuh kSparse) on Hopper. Every case runs twice on the same inputs: with FLATATTN_CUDA_SM90_WS forced
// to a schedule (the Report must name "..._ws<schedule>_sparse", the launch counter must move) and with
// FLATATTN_CUDA_SM90_WS=0 (the older sparse sm90 kernel, sm90/flash_kernel.cuh: a name with "sm90" and no "_ws")
// where that kernel's 128 x 64 tile divides the lists, both judged against the fp64 oracle with the docs/design.md
// rule, and the two must agree on which rows are empty (LSE = -inf and O = 0 in both). The lists are whole tiles of
// the warp-specialized kernel at each head dim (ws_blocks from policy/ws_tile.h: 128 x 128, at D = 256 two 64-key
// kernel blocks per listed block; a 192-row tile row at D = 64 would make it 192 x 128). The cases: each rule (band with causal, random bits,
// local + global with a window), densities 50 / 10 / 0 % (query tiles with no listed block: O = 0, LSE = -inf, no
// deadlock of the producer and the consumers' turns), full-only, partial-only and broadcast lists, GQA and MQA,
// D = 64, 128 and 256 (bf16, f16 at D = 128), Nq not a multiple of the tile (1, 200, 300, 520, 700) and a ragged Nk,
// list blocks of two tiles each way, softcap and ALiBi, varlen (forced only: the planner keeps varlen on the other
// kernel), all three schedules (1 and 3 at D = 64, 128 and 256; 2 runs 1 at D = 64). One host oracle judges both runs
// of a case. Then: the planner sends a sparse call to the warp-specialized kernel exactly when it sends the plain call
// of that shape there; lists the kernel's tile does not divide stay on the older kernel (auto) or are refused naming
// block_sparse.block_q / block_kv when the switch forces the kernel, nothing written. A watchdog timeout (a broken
// pipeline) throws (ScopedWs sets FLATATTN_SM90_WS_CHECK=1). Skipped where no sm_90 GPU runs the sm90 family.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <cstdio>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "flatattn/error.h"
#include "src/cuda/dispatch.h"
#include "src/cuda/family.h"
#include "src/cuda/policy/ws_policy.h"
#include "src/cuda/registry.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

bool sm90_runs() { return gpu_present() && cuda::path_info(0, DType::bf16).sm90_flash; }

#define REQUIRE_SM90() \
  if (!sm90_runs()) GTEST_SKIP() << "no sm_90 GPU, the sm90 family is not built, or FLATATTN_CUDA_SM90=0"

VariantId variant_of_case(const Case& c) {
  return c.options.softcap > 0.f ? VariantId::softcap : c.alibi != 0 ? VariantId::alibi : VariantId::plain;
}

/// Whether this build holds the sm90 forward instance of the case's dtype, head dim and variant (FLATATTN_HDIMS and
/// FLATATTN_VARIANTS narrow the build: such cases are skipped, not failed).
bool sm90_built(const Case& c) {
  const cuda::FwdInstance* f = cuda::find_fwd(cuda::Family::sm90, Dataflow::flash, c.dtype, variant_of_case(c), c.d);
  return f != nullptr && f->d == c.d;
}

/// The older sparse sm90 kernel serves the case too (D = 64 and 128, lists of whole 128 x 64 tiles).
bool older_serves(const Case& c) {
  return (c.d == 64 || c.d == 128) && c.sparse.block_q % 128 == 0 && c.sparse.block_kv % 64 == 0;
}

/// List blocks of whole warp-specialized tiles at head dim d (policy/ws_tile.h): one row tile (192 rows at D = 64,
/// 128 elsewhere) by 128 keys (two kernel key blocks at D = 256; an 80-key tile there would take 160); `scale`
/// multiplies both.
void ws_blocks(Case& c, std::int64_t scale = 1) {
  const cuda::WsTile t = cuda::ws_tile(static_cast<int>(c.d));
  c.sparse.block_q = scale * t.block_m;
  c.sparse.block_kv = scale * (t.block_n == 80 ? 160 : 128);
}

Case sparse_base(DType dt, std::int64_t d, std::int64_t nq, double density, SparseCase::Rule rule) {
  Case c;
  c.dtype = dt, c.batch = 2, c.nq = nq, c.nk = nq + 70, c.hq = 4, c.hkv = 2, c.d = d;
  c.options.return_lse = true;
  c.options.dataflow = Dataflow::flash;
  c.options.causal = rule == SparseCase::Rule::band;
  ws_blocks(c);
  c.sparse.density = density, c.sparse.rule = rule;
  if (rule == SparseCase::Rule::local_global) c.options.window = {40, 40}, c.sparse.globals = {0, 130, 300};
  return c;
}

/// The cases of the suite at head dim d.
std::vector<Case> ws_sparse_cases(DType dt, std::int64_t d) {
  using R = SparseCase::Rule;
  std::vector<Case> v;
  for (R rule : {R::band, R::bits, R::local_global})
    for (double density : {0.5, 0.1, 0.0}) v.push_back(sparse_base(dt, d, 300, density, rule));
  {  // causal composed with random bits (the rule, not the band, decides inside partial blocks; full blocks unmasked)
    Case c = sparse_base(dt, d, 300, 0.5, R::bits);
    c.options.causal = true;
    v.push_back(c);
  }
  {  // full blocks only, broadcast (1, 1, NQB) lists; partial only
    Case c = sparse_base(dt, d, 520, 0.25, R::band);
    c.sparse.full_share = 1.0, c.sparse.per_head = false;
    v.push_back(c);
    Case p = sparse_base(dt, d, 520, 1.0, R::bits);
    p.sparse.full_share = 0.0;
    v.push_back(p);
  }
  {  // MQA, one query row, Nk shorter than a block
    Case c = sparse_base(dt, d, 1, 1.0, R::bits);
    c.hq = 4, c.hkv = 1, c.nk = 90;
    v.push_back(c);
  }
  {  // list blocks of two tiles each way: two row tiles per query block, 2 (D = 256: 4) kernel key blocks per listed block
    Case c = sparse_base(dt, d, 700, 0.5, R::bits);
    ws_blocks(c, 2);
    v.push_back(c);
  }
  {  // a long walk that wraps the K/V ring many times, a single head
    Case c = sparse_base(dt, d, 200, 0.6, R::band);
    c.options.causal = false, c.nk = 2100, c.hq = 1, c.hkv = 1;
    v.push_back(c);
  }
  {  // softcap, ALiBi (the variants the warp-specialized kernel serves)
    Case c = sparse_base(dt, d, 300, 0.5, R::bits);
    c.options.softcap = 30.f;
    v.push_back(c);
    Case a = sparse_base(dt, d, 300, 0.5, R::local_global);
    a.alibi = 1;
    v.push_back(a);
  }
  return v;
}

/// The cases that stress the walk at head dim d (bf16): empty tiles (10 % bits, 0 % band), local + global, a long
/// non-causal walk of wrap_nq rows over 2100 keys that wraps the K/V ring, list blocks of two tiles each way.
std::vector<Case> walk_stress_cases(std::int64_t d, std::int64_t wrap_nq) {
  using R = SparseCase::Rule;
  std::vector<Case> cases;
  cases.push_back(sparse_base(DType::bf16, d, 520, 0.1, R::bits));
  cases.push_back(sparse_base(DType::bf16, d, 520, 0.0, R::band));
  cases.push_back(sparse_base(DType::bf16, d, 300, 0.5, R::local_global));
  Case w = sparse_base(DType::bf16, d, wrap_nq, 0.6, R::band);
  w.options.causal = false, w.nk = 2100;
  cases.push_back(w);
  Case big = sparse_base(DType::bf16, d, 700, 0.5, R::bits);
  ws_blocks(big, 2);
  cases.push_back(big);
  return cases;
}

/// Varlen (f16, MQA): an empty query sequence, a short one, Nq != Nk per sequence, per-sequence lists.
Case varlen_case(std::int64_t d, SparseCase::Rule rule) {
  Case c = sparse_base(DType::f16, d, 300, 0.5, rule);
  c.hq = 4, c.hkv = 1, c.nk = 300, c.varlen = true;
  c.seqlens_q = {300, 0, 170, 5}, c.seqlens_k = {300, 9, 230, 140};
  c.batch = 4;
  return c;
}

/// Runs t under FLATATTN_CUDA_SM90_WS=`sched` (the warp-specialized sparse kernel) and a copy under =0 (the older
/// sparse sm90 kernel, where it serves the case), each judged against the oracle; checks the kernels that ran and
/// that both left the same rows empty.
void check_ws_and_older(CaseTensors& t, std::uint64_t seed, const char* sched, const std::string& what) {
  CaseTensors u = t;  // the same inputs, the outputs still poisoned
  const ForwardOracle o = oracle_forward(t);  // one oracle for both runs (the host's fp64 oracle is the slow part)
  const unsigned long long before = cuda::sm90_ws_launches();
  Report r;
  {
    const ScopedWs ws(sched);
    r = check_case(t, o, seed, (what + " ws" + sched).c_str());
  }
  const std::string want = ws_sparse_suffix(t.c.d, sched);
  EXPECT_NE(r.kernel.find(want), std::string::npos) << what << ": ran " << r.kernel << ", expected " << want;
  EXPECT_EQ(cuda::sm90_ws_launches(), before + 1) << what << ": the warp-specialized kernel did not launch";
  if (!older_serves(t.c)) return;
  Report r0;
  {
    const ScopedWs ws("0");
    r0 = check_case(u, o, seed, (what + " ws0").c_str());
  }
  EXPECT_NE(r0.kernel.find("sm90"), std::string::npos) << what << ": FLATATTN_CUDA_SM90_WS=0 ran " << r0.kernel;
  EXPECT_EQ(r0.kernel.find("_ws"), std::string::npos) << what << ": FLATATTN_CUDA_SM90_WS=0 ran " << r0.kernel;
  if (!t.c.options.return_lse) return;
  std::int64_t empty = 0, mismatched = 0;
  for (std::int64_t i = 0; i < t.lse.numel(); ++i) {
    const bool a = std::isinf(t.lse.at(i)) && t.lse.at(i) < 0, b = std::isinf(u.lse.at(i)) && u.lse.at(i) < 0;
    empty += a;
    mismatched += a != b;
  }
  EXPECT_EQ(mismatched, 0) << what << ": rows empty (LSE = -inf) in one kernel only";
  if (t.c.sparse.density == 0.0) EXPECT_EQ(empty, t.lse.numel()) << what << ": density 0 left a row non-empty";
}

TEST(CudaSparseWs, AgainstOracleAndTheOlderKernel) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("CudaSparseWs.AgainstOracleAndTheOlderKernel");
  std::mt19937_64 rng(seed);
  int runs = 0;
  for (DType dt : {DType::bf16, DType::f16}) {
    for (std::int64_t d : {128, 64, 256}) {
      if (dt == DType::f16 && d != 128) continue;  // f16 once (the host oracle's time: the GPU stage is time-boxed)
      for (const Case& c : ws_sparse_cases(dt, d)) {
        if (!sm90_built(c)) continue;
        CaseTensors t = make_case(c, rng);
        check_ws_and_older(t, seed, "2", c.name() + " " + rule_name(c.sparse.rule));
        if (::testing::Test::HasFailure()) return;
        ++runs;
      }
    }
  }
  if (runs == 0) GTEST_SKIP() << "no sm90 forward instance of D = 64, 128 or 256 in this build";
}

// Schedules 1 (overlap) and 3 (none) on the cases that stress the walk: empty tiles, a long wrapping walk, list
// blocks of two tiles, bits and local + global; D = 128, 256 (80-key blocks) and 64 (three consumers).
TEST(CudaSparseWs, AllSchedules) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("CudaSparseWs.AllSchedules");
  std::mt19937_64 rng(seed);
  int runs = 0;
  for (const char* sched : {"1", "3"}) {
    for (std::int64_t d : {128, 256, 64}) {
      for (const Case& c : walk_stress_cases(d, 200)) {
        if (!sm90_built(c)) continue;
        CaseTensors t = make_case(c, rng);
        check_ws_and_older(t, seed, sched, c.name() + " " + rule_name(c.sparse.rule));
        if (::testing::Test::HasFailure()) return;
        ++runs;
      }
    }
  }
  if (runs == 0) GTEST_SKIP() << "no sm90 bf16 forward instance in this build";
}

// Varlen (forced: the planner keeps varlen calls on the other kernel): an empty query sequence, a short one, Nq != Nk
// per sequence, MQA, per-sequence lists with bits; and causal with the band rule.
TEST(CudaSparseWs, Varlen) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("CudaSparseWs.Varlen");
  std::mt19937_64 rng(seed);
  int runs = 0;
  for (std::int64_t d : {128, 64, 256}) {
    for (SparseCase::Rule rule : {SparseCase::Rule::bits, SparseCase::Rule::band}) {
      const Case c = varlen_case(d, rule);
      if (!sm90_built(c)) continue;
      CaseTensors t = make_case(c, rng);
      check_ws_and_older(t, seed, "2", c.name() + " " + rule_name(rule));
      if (::testing::Test::HasFailure()) return;
      ++runs;
    }
  }
  if (runs == 0) GTEST_SKIP() << "no sm90 f16 forward instance in this build";
}

// The persistent grid of the sparse kernel (FLATATTN_CUDA_SM90_WS_PERSISTENT=1; the same kernel as one CTA per tile,
// sm90/ws_fwd_persistent.cuh ws_fwd_sparse_kernel): with 3 CTAs each walks many tiles of unequal lists (empty ones,
// long ones that wrap the K/V ring, two tiles per list block), so the ring's count and the Q barrier carry across
// tiles of every length. Judged against the oracle, named "..._sparse_p", and bitwise equal to the one-tile grid's
// output and LSE (a tile's arithmetic does not depend on the grid). Schedules 2 and 1 (ping-pong's turns across
// tiles), D = 128, 64 and 256, batched and varlen.
TEST(CudaSparseWs, PersistentGridMatchesOneTile) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("CudaSparseWs.PersistentGridMatchesOneTile");
  std::mt19937_64 rng(seed);
  const ScopedEnv grid("FLATATTN_SM90_WS_PERSISTENT_GRID", "3");
  int runs = 0;
  for (const char* sched : {"2", "1"}) {
    for (std::int64_t d : {128, 64, 256}) {
      std::vector<Case> cases = walk_stress_cases(d, 400);
      cases.push_back(varlen_case(d, SparseCase::Rule::bits));
      for (const Case& c : cases) {
        if (!sm90_built(c)) continue;
        const std::string what = c.name() + " " + rule_name(c.sparse.rule) + " ws" + sched;
        CaseTensors t = make_case(c, rng);
        CaseTensors u = t;  // the same inputs, outputs still poisoned
        const ForwardOracle o = oracle_forward(t);
        const ScopedWs ws(sched);
        Report r0, r1;
        {
          const ScopedEnv p("FLATATTN_CUDA_SM90_WS_PERSISTENT", "0");
          r0 = check_case(t, o, seed, (what + " one-tile").c_str());
        }
        {
          const ScopedEnv p("FLATATTN_CUDA_SM90_WS_PERSISTENT", "1");
          r1 = check_case(u, o, seed, (what + " persistent").c_str());
        }
        EXPECT_TRUE(ends_with(r0.kernel, "_sparse")) << what << ": one-tile grid ran " << r0.kernel;
        EXPECT_TRUE(ends_with(r1.kernel, "_sparse_p")) << what << ": persistent grid ran " << r1.kernel;
        EXPECT_TRUE(t.out.storage == u.out.storage) << what << ": out differs between the grids (seed " << seed << ")";
        EXPECT_TRUE(t.lse.storage == u.lse.storage) << what << ": lse differs between the grids (seed " << seed << ")";
        if (::testing::Test::HasFailure()) return;
        ++runs;
      }
    }
  }
  if (runs == 0) GTEST_SKIP() << "no sm90 forward instance of D = 64, 128 or 256 in this build";
}

// The planner (FLATATTN_CUDA_SM90_WS unset): a sparse call whose lists are whole tiles of the warp-specialized kernel
// runs it exactly when the plain call of its shape does (ws_route.h); block_kv = 64 at D = 128 (not whole 128-key
// blocks) stays on the older sparse kernel.
TEST(CudaSparseWs, PlannerFollowsThePlainCall) {
  REQUIRE_SM90();
  const std::uint64_t seed = seed_for("CudaSparseWs.PlannerFollowsThePlainCall");
  std::mt19937_64 rng(seed);
  const ScopedWs ws(nullptr);
  int runs = 0, ws_runs = 0;
  for (std::int64_t d : {128, 64}) {
    for (auto [b, h, n] : {std::tuple{1, 16, 4096}, std::tuple{2, 4, 520}}) {
      Case c = sparse_base(DType::bf16, d, n, 0.25, SparseCase::Rule::bits);
      c.batch = b, c.hq = h, c.hkv = h, c.nk = n;
      if (!sm90_built(c)) continue;
      Case plain = c;
      plain.sparse = SparseCase{};
      CaseTensors tp = make_case(plain, rng);
      const Report rp = run_on_gpu(tp);
      CaseTensors t = make_case(c, rng);
      // The long shape only runs (its oracle would take minutes on the host); the short one is judged too.
      const Report r = n > 1000 ? run_on_gpu(t) : check_case(t, seed, c.name().c_str());
      EXPECT_EQ(t.out.count_nonfinite(), 0) << c.name() << ": ran " << r.kernel;
      // The planner follows the plain call only where policy/ws_policy.h lets it (kWsSparseByDefault); lists the
      // older kernel cannot take (192-row blocks at D = 64) run the warp-specialized kernel whatever the plain call ran.
      const bool plain_ws = cuda::kWsSparseByDefault && (rp.kernel.find("_ws") != std::string::npos || !older_serves(c));
      EXPECT_EQ(r.kernel.find("_sparse") != std::string::npos && r.kernel.find("_ws") != std::string::npos, plain_ws)
          << c.name() << ": plain call ran " << rp.kernel << ", sparse call ran " << r.kernel;
      EXPECT_NE(r.kernel.find("sm90"), std::string::npos) << c.name() << ": ran " << r.kernel;
      ws_runs += plain_ws;
      ++runs;
      if (d == 128 && n < 1000) {  // 64-key list blocks: the older kernel's 128 x 64 tile only
        Case k = c;
        k.sparse.block_kv = 64;
        CaseTensors tk = make_case(k, rng);
        const Report rk = check_case(tk, seed, (k.name() + " block_kv 64").c_str());
        EXPECT_NE(rk.kernel.find("sm90"), std::string::npos) << "block_kv 64: ran " << rk.kernel;
        EXPECT_EQ(rk.kernel.find("_ws"), std::string::npos) << "block_kv 64: ran " << rk.kernel;
      }
      if (::testing::Test::HasFailure()) return;
    }
  }
  if (runs == 0) GTEST_SKIP() << "no sm90 bf16 forward instance of D = 64 or 128 in this build";
  std::printf("[sparse ws] %d of %d shapes: the planner picked the warp-specialized kernel\n", ws_runs, runs);
}

// Forced onto the warp-specialized kernel, lists it cannot take are refused naming the argument, and nothing is
// written: block_kv = 64 at D = 128 and 64 (half a 128-key block), block_q = 64 (half a 128-row tile) and
// block_kv = 96 at D = 256 (not whole key blocks of the D = 256 row).
TEST(CudaSparseWs, ForcedRefusesOtherTiles) {
  REQUIRE_SM90();
  const ScopedWs ws("2");
  int runs = 0;
  struct Row {
    std::int64_t d, bq, bkv;
    const char* names;
  };
  // bq = 0: the tile's own query rows (policy/ws_tile.h), so that block_kv is the one refused.
  for (const Row& row : {Row{128, 0, 64, "block_sparse.block_kv"}, Row{128, 64, 128, "block_sparse.block_q"},
                         Row{64, 0, 64, "block_sparse.block_kv"}, Row{256, 0, 96, "block_sparse.block_kv"}}) {
    Case c = sparse_base(DType::bf16, row.d, 300, 0.5, SparseCase::Rule::bits);
    c.sparse.block_q = row.bq > 0 ? row.bq : cuda::ws_tile(static_cast<int>(row.d)).block_m;
    c.sparse.block_kv = row.bkv;
    if (!sm90_built(c)) continue;
    CaseTensors t = make_case(c, 21);
    const unsigned long long before = cuda::sm90_ws_launches();
    try {
      const Report r = run_on_gpu(t);
      ADD_FAILURE() << c.name() << ": no error, ran " << r.kernel;
    } catch (const Error& e) {
      const std::string w = e.what();
      EXPECT_EQ(e.kind(), Error::Kind::unsupported) << w;
      EXPECT_NE(w.find(row.names), std::string::npos) << w;
    }
    EXPECT_EQ(cuda::sm90_ws_launches(), before) << c.name();
    EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << c.name() << ": out was written";
    ++runs;
  }
  if (runs == 0) GTEST_SKIP() << "no sm90 bf16 forward instance of D = 64, 128 or 256 in this build";
}

}  // namespace
