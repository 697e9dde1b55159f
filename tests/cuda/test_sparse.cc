// Block-sparse forward and backward on the GPU (issue 16; include/flatattn/sparse.h): random 128 x 128 block
// masks at densities 100/50/25/10/0 % with the band, random bits and local + global in the partial blocks,
// against the fp64 oracle (Table/CudaFeature runs the feature table's sparse rows too). The backward
// (CudaSparseBwd): poisoned dQ/dK/dV judged against the oracle's gradients at densities 100/50/10/0 %,
// partial + full, full-only and partial-only lists, causal, GQA, varlen, empty rows of blocks, and the
// deterministic mode bitwise repeatable. Block sizes that are not multiples of the kernel tile give an Error
// naming the argument with nothing written (a backward without the q lists derives them on the device:
// test_sparse_derive.cc). On Hopper
// the default policy runs sparse calls whose blocks are whole sm90 tiles (128 x 64 forward, 64 x 128 backward,
// D = 64 and 128) on the sm90 wgmma kernels -- the forward on the warp-specialized one where ws_route.h picks it --
// the rest on the sm80-style ones (CudaSparseSm90 checks which ran; the Density suite and CudaSparseSm90 also run
// each forward with the warp-specialized kernel forced, test_sparse_ws.cc has its own suite);
// a bias gradient with sparse lists (CudaSparseBwdCases.BiasGradient) on either family.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <tuple>

#include "src/cuda/dispatch.h"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/registry.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

Case sparse_case(DType dt, std::int64_t n, double density, SparseCase::Rule rule) {
  Case c;
  c.dtype = dt, c.batch = 2, c.nq = n, c.nk = n + 70, c.hq = 4, c.hkv = 2, c.d = 128;
  c.options.return_lse = true;
  c.options.causal = rule == SparseCase::Rule::band;
  c.sparse.block_q = 128, c.sparse.block_kv = 128;
  c.sparse.density = density, c.sparse.rule = rule;
  if (rule == SparseCase::Rule::local_global) c.options.window = {40, 40}, c.sparse.globals = {0, 300, 511};
  return c;
}

bool sm90_runs() { return gpu_present() && cuda::path_info(0, DType::bf16).sm90_flash; }

/// Whether this build holds the sm90 forward and backward of (dt, D), plain (the CI subset: bf16 D = 128 only).
bool sm90_built(DType dt, std::int64_t d) {
  const cuda::FwdInstance* f = cuda::find_fwd(cuda::Family::sm90, Dataflow::flash, dt, VariantId::plain, d);
  const cuda::BwdInstance* b = cuda::find_bwd(cuda::Family::sm90, dt, VariantId::plain, d);
  return f != nullptr && b != nullptr && f->d == d && b->d == d;
}

class CudaSparse : public ::testing::TestWithParam<std::tuple<double, SparseCase::Rule>> {
 protected:
  void SetUp() override { REQUIRE_GPU(); }
};

TEST_P(CudaSparse, ForwardAgainstOracle) {
  const auto [density, rule] = GetParam();
  const std::uint64_t seed = seed_for("CudaSparse.ForwardAgainstOracle");
  std::mt19937_64 rng(seed);
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    for (std::int64_t d : {64, 128}) {
      Case c = sparse_case(dt, 520, density, rule);
      c.d = d;
      CaseTensors t = make_case(c, rng);
      CaseTensors u = t;  // the same inputs, outputs still poisoned
      const ForwardOracle o = oracle_forward(t);
      check_case(t, o, seed, c.name().c_str());
      // On Hopper the warp-specialized kernel's sparse walk too (forced: the planner may keep this short shape on
      // the older sm90 kernel; test_sparse_ws.cc has the rest).
      if (sm90_runs() && sm90_built(dt, d) && ws_takes_sparse(c)) {
        const ScopedWs ws("2");
        const Report r = check_case(u, o, seed, (c.name() + " ws2").c_str());
        EXPECT_NE(r.kernel.find(ws_sparse_suffix(d, "2")), std::string::npos) << c.name() << ": ran " << r.kernel;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Density, CudaSparse,
                         ::testing::Combine(::testing::Values(1.0, 0.5, 0.25, 0.1, 0.0),
                                            ::testing::Values(SparseCase::Rule::band, SparseCase::Rule::bits,
                                                              SparseCase::Rule::local_global)),
                         [](const auto& info) {
                           return "d" + std::to_string(static_cast<int>(std::get<0>(info.param) * 100)) + "_" +
                                  rule_name(std::get<1>(info.param));
                         });

TEST(CudaSparseErrors, BlockSizeNotAMultipleOfTheTile) {
  REQUIRE_GPU();
  Case c = sparse_case(DType::f16, 192, 0.5, SparseCase::Rule::bits);
  c.sparse.block_q = 96, c.sparse.block_kv = 96;  // no CUDA tile divides 96 rows and 96 keys at once
  CaseTensors t = make_case(c, 11);
  try {
    run_on_gpu(t);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_EQ(e.kind(), Error::Kind::unsupported) << w;  // valid lists (the CPU takes them), not for these kernels
    EXPECT_TRUE(w.find("block_sparse.block_q") != std::string::npos || w.find("block_sparse.block_kv") != std::string::npos)
        << w;
  }
  EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << "out was written";
}

// Lists whose key blocks are whole forward tiles but not whole backward tiles (sm80 family, D = 128: forward
// 128 x 64, backward 64 x 128): the backward refuses block_kv = 64 as unsupported, nothing written. Where the
// device's backward tile divides 64 keys (another family), the gradients are judged instead.
TEST(CudaSparseErrors, BackwardBlockSizeNotAMultipleOfTheTile) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaSparseErrors.BackwardBlockSizeNotAMultipleOfTheTile");
  Case c = sparse_case(DType::f16, 256, 0.5, SparseCase::Rule::bits);
  c.sparse.block_kv = 64, c.sparse.give_q = true;
  CaseTensors t = make_case(c, seed, /*with_backward=*/true);
  run_on_gpu(t);
  const int tile_n = cuda::bwd_tile(cuda::path_info(0, DType::f16).family, 128).block_n;
  if (64 % tile_n == 0) {
    check_backward(t, seed, "block_kv 64");
    return;
  }
  try {
    run_backward_on_gpu(t);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_EQ(e.kind(), Error::Kind::unsupported) << w;
    EXPECT_NE(w.find("block_sparse.block_kv"), std::string::npos) << w;
  }
  for (const HostTensor* g : {&t.dq, &t.dk, &t.dv}) EXPECT_EQ(g->count_nonfinite(), g->numel()) << "a gradient was written";
}

// The backward (issue 16, sm80/bwd_kernel.cuh kSparse): per key block the listed query blocks only.
class CudaSparseBwd : public ::testing::TestWithParam<std::tuple<double, SparseCase::Rule>> {
 protected:
  void SetUp() override { REQUIRE_GPU(); }
};

TEST_P(CudaSparseBwd, GradientsAgainstOracle) {
  const auto [density, rule] = GetParam();
  const std::uint64_t seed = seed_for("CudaSparseBwd.GradientsAgainstOracle");
  std::mt19937_64 rng(seed);
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    for (std::int64_t d : {64, 128}) {
      for (double full_share : {0.5, 1.0, 0.0}) {  // partial + full, full only, partial only
        if (d == 128 && full_share != 0.5) continue;
        Case c = sparse_case(dt, 520, density, rule);
        c.d = d, c.sparse.full_share = full_share, c.sparse.give_q = true;
        c.sparse.per_head = full_share != 1.0;  // full only: broadcast (1, 1, ...) lists
        CaseTensors t = make_case(c, rng, /*with_backward=*/true);
        check_backward(t, seed, c.name().c_str());
        if (::testing::Test::HasFailure()) return;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Density, CudaSparseBwd,
                         ::testing::Combine(::testing::Values(1.0, 0.5, 0.1, 0.0),
                                            ::testing::Values(SparseCase::Rule::band, SparseCase::Rule::bits,
                                                              SparseCase::Rule::local_global)),
                         [](const auto& info) {
                           return "d" + std::to_string(static_cast<int>(std::get<0>(info.param) * 100)) + "_" +
                                  rule_name(std::get<1>(info.param));
                         });

// Varlen (an empty query sequence, a short one) with per-sequence lists, MQA, bits; the forward from the
// oracle too, so a failure points at the backward.
TEST(CudaSparseBwdCases, VarlenGqaBits) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaSparseBwdCases.VarlenGqaBits");
  std::mt19937_64 rng(seed);
  for (FwdSource src : {FwdSource::oracle, FwdSource::gpu}) {
    Case c = sparse_case(DType::f16, 300, 0.5, SparseCase::Rule::bits);
    c.hq = 4, c.hkv = 1, c.nk = 300, c.varlen = true;
    c.seqlens_q = {300, 0, 170}, c.seqlens_k = {300, 9, 170};
    c.batch = 3, c.sparse.give_q = true;
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    check_backward(t, seed, c.name().c_str(), src);
  }
}

// Empty rows of blocks at 10 % (O = 0, LSE = -inf, zero gradients) and key blocks no query block lists (dK =
// dV = 0 written), with causal band rows: judged against the oracle's zeros.
TEST(CudaSparseBwdCases, EmptyRowsAndColumns) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaSparseBwdCases.EmptyRowsAndColumns");
  std::mt19937_64 rng(seed);
  for (double density : {0.1, 0.0}) {
    Case c = sparse_case(DType::bf16, 640, density, SparseCase::Rule::band);
    c.sparse.give_q = true;
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    check_backward(t, seed, c.name().c_str());
  }
}

// Deterministic mode: the fixed-point dQ sums (common/repro_dq.cuh) do not depend on the order the key blocks'
// CTAs add them, with holes too: two runs (default stream, then a fresh stream) bitwise equal.
TEST(CudaSparseBwdCases, DeterministicBitwiseRepeatable) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaSparseBwdCases.DeterministicBitwiseRepeatable");
  std::mt19937_64 rng(seed);
  for (SparseCase::Rule rule : {SparseCase::Rule::bits, SparseCase::Rule::band}) {
    Case c = sparse_case(DType::bf16, 700, 0.5, rule);
    c.options.deterministic = true, c.sparse.give_q = true;
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    check_backward(t, seed, "deterministic");
    CaseTensors u = t;
    u.dq.poison();
    u.dk.poison();
    u.dv.poison();
    const Report r = run_backward_on_gpu(u, /*own_stream=*/true);
    EXPECT_NE(r.kernel.find("deterministic"), std::string::npos) << r.kernel;
    for (auto [a, b, g] : {std::tuple{&t.dq, &u.dq, "dq"}, std::tuple{&t.dk, &u.dk, "dk"}, std::tuple{&t.dv, &u.dv, "dv"}})
      EXPECT_EQ(std::memcmp(a->storage.data(), b->storage.data(), a->bytes()), 0)
          << g << " differs between two deterministic runs [" << c.name() << "] seed " << seed;
  }
}

// A full (B, Hq, Nq, Nk) bias and a broadcast (1, 1, Nq, Nk) one with sparse lists: dbias holds dS in the visited
// blocks and 0 elsewhere (the kernels zero the key block's rows before the walk; after it they overwrote the
// visited blocks' values), judged against the oracle's dbias; the deterministic mode's per-(b, h) workspace too.
TEST(CudaSparseBwdCases, BiasGradient) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaSparseBwdCases.BiasGradient");
  std::mt19937_64 rng(seed);
  for (const char* dims : {"bhq", "q"}) {
    for (bool det : {false, true}) {
      for (SparseCase::Rule rule : {SparseCase::Rule::bits, SparseCase::Rule::band}) {
        Case c = sparse_case(DType::bf16, 400, 0.5, rule);
        c.bias_dims = dims, c.options.deterministic = det, c.sparse.give_q = true;
        CaseTensors t = make_case(c, rng, /*with_backward=*/true);
        check_backward(t, seed, c.name().c_str());
        if (::testing::Test::HasFailure()) return;
      }
    }
  }
}

// The sm90 family (issue 16; sm90/flash_kernel.cuh, sm90/bwd_kernel.cuh kSparse) on Hopper: 128 x 128 lists at D = 64
// and 128 run the wgmma forward and backward (the Report names sm90), judged against the oracle with each rule at
// 50 % and bits at 10 % too, GQA, the keys' ragged end (Nk = Nq + 70); a second backward gives bitwise equal dK and dV
// (no atomics there) and names sm90 too. The forward runs three times: the default policy, FLATATTN_CUDA_SM90_WS=2
// (the warp-specialized kernel's sparse walk, "..._ws2_sparse"; where its tile divides the lists: D = 128) and =0
// (the older sm90 kernel, no "_ws"), each judged.
// FLATATTN_CUDA_SM90=0 moves the same calls to the sm80 family, and lists the
// sm90 tile does not divide (block_kv = 64 for the backward's 128 keys) stay there. Skipped elsewhere.
TEST(CudaSparseSm90, ForwardAndBackwardRunTheWgmmaKernels) {
  if (!sm90_runs()) GTEST_SKIP() << "no sm_90 GPU, the sm90 family is not built, or FLATATTN_CUDA_SM90=0";
  const std::uint64_t seed = seed_for("CudaSparseSm90.ForwardAndBackwardRunTheWgmmaKernels");
  std::mt19937_64 rng(seed);
  int runs = 0;
  for (DType dt : {DType::bf16, DType::f16}) {
    for (std::int64_t d : {64, 128}) {
      if (!sm90_built(dt, d)) continue;
      for (SparseCase::Rule rule : {SparseCase::Rule::band, SparseCase::Rule::bits, SparseCase::Rule::local_global}) {
        for (double density : {0.5, 0.1}) {
          if (density != 0.5 && rule != SparseCase::Rule::bits) continue;  // 10 %: empty block rows, with bits
          Case c = sparse_case(dt, 520, density, rule);
          c.d = d, c.sparse.give_q = true;
          CaseTensors t = make_case(c, rng, /*with_backward=*/true);
          CaseTensors w = t;  // the same inputs, outputs still poisoned
          const std::string what = c.name() + " " + rule_name(rule);
          const ForwardOracle fo = oracle_forward(t);
          const Report r = check_case(t, fo, seed, what.c_str());
          EXPECT_NE(r.kernel.find("sm90"), std::string::npos) << what << ": forward kernel " << r.kernel;
          if (ws_takes_sparse(c)) {  // the warp-specialized kernel's sparse walk (forced), then the older sm90 kernel (=0)
            const ScopedWs ws("2");
            const Report rw = check_case(w, fo, seed, (what + " ws2").c_str());
            EXPECT_NE(rw.kernel.find(ws_sparse_suffix(d, "2")), std::string::npos) << what << ": forward kernel " << rw.kernel;
          }
          {
            const ScopedWs ws("0");
            CaseTensors o = w;
            o.out.poison();
            o.lse.poison();
            const Report ro = check_case(o, fo, seed, (what + " ws0").c_str());
            EXPECT_NE(ro.kernel.find("sm90"), std::string::npos) << what << ": forward kernel " << ro.kernel;
            EXPECT_EQ(ro.kernel.find("_ws"), std::string::npos) << what << ": forward kernel " << ro.kernel;
          }
          check_backward(t, seed, what.c_str());
          CaseTensors u = t;
          u.dq.poison();
          u.dk.poison();
          u.dv.poison();
          const Report rb = run_backward_on_gpu(u);
          EXPECT_NE(rb.kernel.find("sm90"), std::string::npos) << what << ": backward kernel " << rb.kernel;
          for (auto [a, b, g] : {std::tuple{&t.dk, &u.dk, "dk"}, std::tuple{&t.dv, &u.dv, "dv"}})
            EXPECT_EQ(std::memcmp(a->storage.data(), b->storage.data(), a->bytes()), 0)
                << g << " differs between two backward runs [" << what << "] seed " << seed;
          if (::testing::Test::HasFailure()) return;
          ++runs;
        }
      }
    }
  }
  if (runs == 0) GTEST_SKIP() << "no sm90 instance of D = 64 or 128 in this build";
}

TEST(CudaSparseSm90, OtherTilesAndTheSwitchRunTheSm80Family) {
  if (!sm90_runs()) GTEST_SKIP() << "no sm_90 GPU, the sm90 family is not built, or FLATATTN_CUDA_SM90=0";
  const std::uint64_t seed = seed_for("CudaSparseSm90.OtherTilesAndTheSwitchRunTheSm80Family");
  std::mt19937_64 rng(seed);
  {
    const ScopedSm90 off("0");
    Case c = sparse_case(DType::bf16, 520, 0.5, SparseCase::Rule::bits);
    c.sparse.give_q = true;
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    const Report r = check_case(t, seed, "FLATATTN_CUDA_SM90=0");
    EXPECT_EQ(r.kernel.find("sm90"), std::string::npos) << "FLATATTN_CUDA_SM90=0: forward kernel " << r.kernel;
    check_backward(t, seed, "FLATATTN_CUDA_SM90=0");
    const Report rb = run_backward_on_gpu(t);
    EXPECT_EQ(rb.kernel.find("sm90"), std::string::npos) << "FLATATTN_CUDA_SM90=0: backward kernel " << rb.kernel;
  }
  // block_kv = 64: whole tiles of the sm90 forward (128 x 64), which runs it; the backward runs the sm80 family
  // where its tile divides 64 keys, else refuses with an Error naming block_kv (D = 128: 64 x 128, refused).
  if (!sm90_built(DType::bf16, 128)) GTEST_SKIP() << "no sm90 bf16 D = 128 instance in this build";
  Case c = sparse_case(DType::bf16, 520, 0.5, SparseCase::Rule::bits);
  c.sparse.block_kv = 64, c.sparse.give_q = true;
  CaseTensors t = make_case(c, rng, /*with_backward=*/true);
  const Report r = check_case(t, seed, "block_kv 64");
  EXPECT_NE(r.kernel.find("sm90"), std::string::npos) << "block_kv 64: forward kernel " << r.kernel;
  if (64 % cuda::bwd_tile(cuda::path_info(0, DType::bf16).family, 128).block_n == 0) {
    check_backward(t, seed, "block_kv 64");
    const Report rb = run_backward_on_gpu(t);
    EXPECT_EQ(rb.kernel.find("sm90"), std::string::npos) << "block_kv 64: backward kernel " << rb.kernel;
    return;
  }
  try {
    run_backward_on_gpu(t);
    ADD_FAILURE() << "block_kv 64: no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("block_sparse.block_kv"), std::string::npos) << e.what();
  }
  for (const HostTensor* g : {&t.dq, &t.dk, &t.dv}) EXPECT_EQ(g->count_nonfinite(), g->numel()) << "a gradient was written";
}

}  // namespace
