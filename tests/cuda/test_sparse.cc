// Block-sparse forward and backward on the GPU (issue 16; include/flatattn/sparse.h): random 128 x 128 block
// masks at densities 100/50/25/10/0 % with the band, random bits and local + global in the partial blocks,
// against the fp64 oracle (Table/CudaFeature runs the feature table's sparse rows too). The backward
// (CudaSparseBwd): poisoned dQ/dK/dV judged against the oracle's gradients at densities 100/50/10/0 %,
// partial + full, full-only and partial-only lists, causal, GQA, varlen, empty rows of blocks, and the
// deterministic mode bitwise repeatable. Block sizes that are not multiples of the kernel tile and a CUDA
// backward without the transposed q lists give an Error naming the argument with nothing written. Both
// families' switches: the default policy keeps sparse calls on the sm80-style kernels.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <tuple>

#include "src/cuda/policy/tile_size.h"
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

const char* rule_name(SparseCase::Rule r) {
  switch (r) {
    case SparseCase::Rule::band: return "band";
    case SparseCase::Rule::bits: return "bits";
    case SparseCase::Rule::local_global: return "local_global";
  }
  return "?";
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
      check_case(t, seed, c.name().c_str());
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

// The CUDA backward walks the transposed q lists; without them (the library transposes on the host only) it
// refuses with an Error naming block_sparse.q_num_blocks, and dq, dk, dv keep their poison.
TEST(CudaSparseErrors, BackwardWithoutQLists) {
  REQUIRE_GPU();
  Case c = sparse_case(DType::f16, 256, 0.5, SparseCase::Rule::band);
  c.sparse.give_q = false;
  CaseTensors t = make_case(c, 12, /*with_backward=*/true);
  run_on_gpu(t);
  try {
    run_backward_on_gpu(t);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_EQ(e.kind(), Error::Kind::unsupported) << w;  // valid lists (the CPU derives the transpose)
    EXPECT_NE(w.find("block_sparse.q_num_blocks"), std::string::npos) << w;
  }
  for (const HostTensor* g : {&t.dq, &t.dk, &t.dv}) EXPECT_EQ(g->count_nonfinite(), g->numel()) << "a gradient was written";
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

}  // namespace
