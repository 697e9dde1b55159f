// Block-sparse attention and local + global attention on the CPU engine (issue 16; include/flatattn/sparse.h)
// against the fp64 oracle: the oracle itself against an independent element-mask attention, random block
// masks at densities 100/50/25/10/0 % with odd block sizes, full-only and partial-only lists, global tokens
// at the ends and in the middle, FlexAttention's example masks as block lists, empty rows (O = 0, LSE = -inf,
// zero gradients), and the bad-input table (an Error naming the argument, nothing written).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "src/check/sparse_case.h"
#include "src/cpu/policy.h"
#include "src/reference/reference.h"
#include "tests/cpu/cpu_check.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

/// Forward on every dataflow and a few small plans, then the backward with the policy's plan and small
/// plans, each against the oracle.
void check_sparse_case(CaseTensors& t) {
  const ForwardOracle fo = forward_yardstick(t);
  for (Dataflow df : {Dataflow::automatic, Dataflow::flash, Dataflow::flat}) {
    Options opt = t.c.options;
    opt.dataflow = df;
    const Report r = run_forward(t, opt);
    expect_forward_ok(t, fo, std::string(name(df)) + " (" + r.kernel + ")");
  }
  for (const cpu::ForwardPlan& plan : {cpu::ForwardPlan{Dataflow::flash, 12, 32}, cpu::ForwardPlan{Dataflow::flash, 24, 64}}) {
    const Report r = run_forward(t, t.c.options, plan);
    expect_forward_ok(t, fo, r.kernel);
  }
  Options opt = t.c.options;
  opt.return_lse = true;
  run_forward(t, opt);
  const BackwardOracle ref = oracle_backward(t);
  const BackwardYardstick naive = naive_backward(t, ref);
  const Report r = run_backward(t, opt);
  expect_backward_ok(t, ref, naive, r.kernel);
  for (const cpu::BackwardPlan& plan : {cpu::BackwardPlan{12, 32, 96}, cpu::BackwardPlan{24, 64, 192}}) {
    const Report rs = run_backward(t, opt, plan);
    expect_backward_ok(t, ref, naive, rs.kernel);
  }
}

Case base_case(DType dt, std::int64_t nq, std::int64_t nk) {
  Case c;
  c.dtype = dt, c.batch = 2, c.nq = nq, c.nk = nk, c.hq = 4, c.hkv = 2, c.d = 40;
  c.options.return_lse = true;
  return c;
}

// The oracle's sparse path against an attention written here from an explicit boolean matrix (every block
// partial, the bits = the matrix): the oracle is the judge, so it is checked by something independent.
TEST(SparseOracle, MatchesExplicitElementMask) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c = base_case(DType::f32, 70, 90);
  c.batch = 1, c.hq = 1, c.hkv = 1;
  c.sparse.block_q = 16, c.sparse.block_kv = 32;
  c.sparse.pattern = SparseCase::Pattern::random;
  c.sparse.rule = SparseCase::Rule::bits;
  c.sparse.density = 1.0, c.sparse.full_share = 0.0, c.sparse.bit_density = 0.3;
  CaseTensors t = make_case(c, s.rng);
  const ForwardOracle o = oracle_forward(t);
  // The bits as a matrix, read back from the tensors by their documented layout.
  const auto* bits = static_cast<const std::int32_t*>(t.mask_bits.data());
  const auto* off = static_cast<const std::int32_t*>(t.bit_offsets.data());
  const std::int64_t nkb = 3;
  int visible = 0;
  for (std::int64_t i = 0; i < c.nq; ++i) {
    std::vector<double> logit(c.nk, -std::numeric_limits<double>::infinity());
    double mx = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < c.nk; ++j) {
      const std::int64_t r = i / 16, kb = j / 32;
      const std::int64_t blk = off[r] + kb;  // every block partial, in order: slot = kb
      ASSERT_LT(kb, nkb);
      const std::uint32_t w = static_cast<std::uint32_t>(bits[(blk * 16 + i % 16) * 1 + (j % 32) / 32]);
      if (!((w >> (j % 32)) & 1u)) continue;
      ++visible;
      double acc = 0;
      for (std::int64_t d = 0; d < c.d; ++d) acc += t.q.at(i * c.d + d) * t.k.at(j * c.d + d);
      logit[j] = acc * double(static_cast<float>(1.0 / std::sqrt(double(c.d))));  // the call's fp32 scale
      mx = std::max(mx, logit[j]);
    }
    double sum = 0;
    for (std::int64_t j = 0; j < c.nk; ++j) sum += mx == -INFINITY ? 0 : std::exp(logit[j] - mx);
    for (std::int64_t d = 0; d < c.d; ++d) {
      double acc = 0;
      for (std::int64_t j = 0; j < c.nk; ++j)
        if (sum > 0) acc += std::exp(logit[j] - mx) / sum * t.v.at(j * c.d + d);
      EXPECT_NEAR(o.out.at(i * c.d + d), acc, 1e-12) << "row " << i << " d " << d;
    }
    if (sum == 0) {
      EXPECT_EQ(o.lse.at(i), -INFINITY);
    } else {
      EXPECT_NEAR(o.lse.at(i), mx + std::log(sum), 1e-12);
    }
  }
  EXPECT_GT(visible, c.nq * c.nk / 5);  // the bits are neither all clear nor all set
  EXPECT_LT(visible, c.nq * c.nk / 2);
}

// Every block listed as full is the dense call: the sparse oracle and engine give the dense results.
TEST(SparseOracle, AllFullIsDense) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c = base_case(DType::f32, 77, 101);
  c.sparse.block_q = 32, c.sparse.block_kv = 32;
  c.sparse.density = 1.0, c.sparse.full_share = 1.0;
  CaseTensors t = make_case(c, s.rng);
  Case dense = c;
  dense.sparse = {};
  CaseTensors td = make_case(dense, s.rng);
  td.q = t.q, td.k = t.k, td.v = t.v;
  const ForwardOracle a = oracle_forward(t), b = oracle_forward(td);
  for (std::int64_t e = 0; e < a.out.numel(); ++e) ASSERT_EQ(a.out.at(e), b.out.at(e)) << e;
  for (std::int64_t e = 0; e < a.lse.numel(); ++e) ASSERT_EQ(a.lse.at(e), b.lse.at(e)) << e;
}

// Random block masks at densities 100/50/25/10/0 %, block sizes that are not multiples of the engine's tiles.
class SparseDensity : public ::testing::TestWithParam<std::tuple<DType, double>> {};

TEST_P(SparseDensity, MatchesOracle) {
  const auto [dt, density] = GetParam();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (auto [bq, bkv, rule] : {std::tuple{16, 32, SparseCase::Rule::bits}, std::tuple{20, 24, SparseCase::Rule::band},
                               std::tuple{64, 48, SparseCase::Rule::bits}}) {
    Case c = base_case(dt, 150, 170);
    c.options.causal = rule == SparseCase::Rule::band;
    c.sparse.block_q = bq, c.sparse.block_kv = bkv, c.sparse.rule = rule, c.sparse.density = density;
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
    check_sparse_case(t);
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, SparseDensity,
                         ::testing::Combine(::testing::Values(DType::f32, DType::bf16),
                                            ::testing::Values(1.0, 0.5, 0.25, 0.1, 0.0)),
                         [](const auto& info) {
                           return std::string(name(std::get<0>(info.param))) + "_density" +
                                  std::to_string(static_cast<int>(std::get<1>(info.param) * 100));
                         });

// Density 0: no visible key anywhere: O = 0, LSE = -inf, dQ = dK = dV = 0, nothing NaN.
TEST(Sparse, EmptyMaskGivesZeros) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c = base_case(DType::f16, 60, 50);
  c.sparse.block_q = 32, c.sparse.block_kv = 32, c.sparse.density = 0.0;
  CaseTensors t = make_case(c, s.rng, true);
  run_forward(t, c.options);
  for (std::int64_t e = 0; e < t.out.numel(); ++e) ASSERT_EQ(t.out.at(e), 0.0) << e;
  for (std::int64_t e = 0; e < t.lse.numel(); ++e) ASSERT_EQ(t.lse.at(e), -INFINITY) << e;
  run_backward(t, c.options);
  for (const HostTensor* g : {&t.dq, &t.dk, &t.dv})
    for (std::int64_t e = 0; e < g->numel(); ++e) ASSERT_EQ(g->at(e), 0.0) << e;
}

// Block lists with an additive bias and its gradient (full and broadcast): dbias is dS in the visited blocks and 0
// elsewhere (the CUDA kernels are judged on the same cases, tests/cuda/test_sparse.cc BiasGradient).
TEST(Sparse, BiasGradient) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const char* dims : {"bhq", "q"}) {
    Case c = base_case(DType::bf16, 150, 170);
    c.bias_dims = dims;
    c.sparse.block_q = 32, c.sparse.block_kv = 32, c.sparse.density = 0.5, c.sparse.rule = SparseCase::Rule::bits;
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
    check_sparse_case(t);
  }
}

// FlexAttention's example masks built as block lists + bits from their element predicate.
class SparsePattern : public ::testing::TestWithParam<SparseCase::Pattern> {};

TEST_P(SparsePattern, MatchesOracle) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c = base_case(DType::bf16, 200, 200);
  c.sparse.block_q = 32, c.sparse.block_kv = 64, c.sparse.pattern = GetParam(), c.sparse.rule = SparseCase::Rule::bits;
  c.sparse.window = 50, c.sparse.give_q = true;
  SCOPED_TRACE(c.name());
  CaseTensors t = make_case(c, s.rng, true);
  check_sparse_case(t);
}

INSTANTIATE_TEST_SUITE_P(Cpu, SparsePattern,
                         ::testing::Values(SparseCase::Pattern::causal, SparseCase::Pattern::sliding,
                                           SparseCase::Pattern::prefix_lm, SparseCase::Pattern::document));

// Local + global: global tokens at the ends and in the middle, with and without causal, derived lists
// and user lists (BigBird: random blocks whose partial blocks take the local + global rule).
TEST(LocalGlobal, GlobalsAtEndsAndMiddle) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (bool causal : {false, true})
    for (bool derive : {true, false}) {
      Case c = base_case(DType::f32, 190, 190);
      c.options.causal = causal;
      c.options.window = {17, causal ? 0 : 9};
      c.sparse.rule = SparseCase::Rule::local_global;
      c.sparse.globals = {0, 1, 95, 189};
      c.sparse.derive = derive;
      if (!derive) c.sparse.block_q = 32, c.sparse.block_kv = 32, c.sparse.density = 0.6;
      SCOPED_TRACE(c.name());
      CaseTensors t = make_case(c, s.rng, true);
      check_sparse_case(t);
    }
}

// The derived local + global lists skip the blocks the rule never reaches: a global key block is visited by
// every row, a far block without globals is not (checked through the oracle's element mask being the rule).
TEST(LocalGlobal, ElementMaskIsTheRule) {
  Seeded s;
  Case c = base_case(DType::f32, 300, 300);
  c.batch = 1, c.hq = 1, c.hkv = 1;
  c.options.window = {10, 10};
  c.sparse.rule = SparseCase::Rule::local_global, c.sparse.derive = true, c.sparse.globals = {150};
  CaseTensors t = make_case(c, s.rng);
  const auto masks = sparse_element_masks(t);
  ASSERT_EQ(masks.size(), 1u);
  for (std::int64_t i = 0; i < 300; ++i)
    for (std::int64_t j = 0; j < 300; ++j) {
      const bool want = std::abs(i - j) <= 10 || i == 150 || j == 150;
      ASSERT_EQ(masks[0][i * 300 + j] != 0, want) << i << ", " << j;
    }
}

// Bad input: an Error naming the argument, and neither out nor lse written.
struct BadCase {
  const char* what;
  const char* argument;
  void (*mutate)(BlockSparse&, CaseTensors&);
};

std::int32_t* i32(HostTensor& t) { return static_cast<std::int32_t*>(t.data()); }

const BadCase kBad[] = {
    {"index out of range", "block_sparse.kv_indices",
     [](BlockSparse&, CaseTensors& t) { i32(t.kv_num)[0] = 1, i32(t.kv_idx)[0] = 7; }},
    {"negative index", "block_sparse.kv_indices",
     [](BlockSparse&, CaseTensors& t) { i32(t.kv_num)[0] = 1, i32(t.kv_idx)[0] = -1; }},
    {"count beyond the blocks", "block_sparse.kv_num_blocks", [](BlockSparse&, CaseTensors& t) { i32(t.kv_num)[0] = 9; }},
    {"negative count", "block_sparse.full_kv_num_blocks", [](BlockSparse&, CaseTensors& t) { i32(t.fkv_num)[1] = -1; }},
    {"non-monotone indices", "block_sparse.kv_indices",
     [](BlockSparse&, CaseTensors& t) { i32(t.kv_num)[0] = 2, i32(t.kv_idx)[0] = 2, i32(t.kv_idx)[1] = 1; }},
    {"duplicated index", "block_sparse.kv_indices",
     [](BlockSparse&, CaseTensors& t) { i32(t.kv_num)[0] = 2, i32(t.kv_idx)[0] = 1, i32(t.kv_idx)[1] = 1; }},
    {"block both partial and full", "block_sparse.full_kv_indices",
     [](BlockSparse&, CaseTensors& t) {
       i32(t.kv_num)[0] = 1, i32(t.kv_idx)[0] = 0, i32(t.fkv_num)[0] = 1, i32(t.fkv_idx)[0] = 0;
     }},
    {"zero block size", "block_sparse.block_q", [](BlockSparse& b, CaseTensors&) { b.block_q = 0; }},
    {"block size changes the shapes", "block_sparse.kv_num_blocks", [](BlockSparse& b, CaseTensors&) { b.block_q = 16; }},
    {"wrong dtype", "block_sparse.kv_indices", [](BlockSparse& b, CaseTensors&) { b.kv_indices.dtype = DType::f32; }},
    {"batch dim neither 1 nor B", "block_sparse.kv_num_blocks",
     [](BlockSparse& b, CaseTensors&) { b.kv_num_blocks.shape[0] = 3; }},
    {"full counts without indices", "block_sparse.full_kv_indices",
     [](BlockSparse& b, CaseTensors&) { b.full_kv_indices = {}; }},
    {"q lists that are not the transpose", "block_sparse.q_indices",
     [](BlockSparse& b, CaseTensors& t) {
       i32(t.kv_num)[0] = 1, i32(t.kv_idx)[0] = 0;  // one partial block; the q lists below list none
       b.q_num_blocks = t.fkv_num.view(), b.q_indices = t.fkv_idx.view();  // (B, H, NKB = NQB, W) zeros
       b.full_q_num_blocks = t.fkv_num.view(), b.full_q_indices = t.fkv_idx.view();
     }},
    {"bit-block offsets past mask_bits", "block_sparse.mask_block_offsets",
     [](BlockSparse& b, CaseTensors& t) {
       b.mask_bits = t.mask_bits.view(), b.mask_block_offsets = t.bit_offsets.view();
       i32(t.kv_num)[0] = 1, i32(t.kv_idx)[0] = 0, i32(t.fkv_num)[0] = 0;
       i32(t.bit_offsets)[0] = 1 << 20;
     }},
};

TEST(SparseBadInput, ErrorNamesArgumentAndWritesNothing) {
  for (const BadCase& bc : kBad) {
    SCOPED_TRACE(bc.what);
    Case c = base_case(DType::f32, 96, 96);  // 3 x 3 blocks of 32
    c.sparse.block_q = 32, c.sparse.block_kv = 32, c.sparse.density = 0.0;
    c.sparse.rule = SparseCase::Rule::bits;
    CaseTensors t = make_case(c, 1234, true);
    ForwardArgs a = t.forward_args();
    bc.mutate(*a.block_sparse, t);
    t.out.poison();
    t.lse.poison();
    try {
      forward(a, c.options);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bc.argument), std::string::npos) << e.what();
    }
    EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << "out was written";
    EXPECT_EQ(t.lse.count_nonfinite(), t.lse.numel()) << "lse was written";
  }
}

TEST(SparseBadInput, GlobalPositions) {
  for (std::vector<std::int32_t> g : {std::vector<std::int32_t>{5, 5}, std::vector<std::int32_t>{9, 3},
                                      std::vector<std::int32_t>{-1}, std::vector<std::int32_t>{96}}) {
    Case c = base_case(DType::f32, 96, 96);
    c.sparse.rule = SparseCase::Rule::local_global, c.sparse.derive = true, c.sparse.globals = g;
    EXPECT_THROW(
        {
          CaseTensors t = make_case(c, 7);
          try {
            forward(t.forward_args(), c.options);
          } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("local_global.global_positions"), std::string::npos) << e.what();
            EXPECT_EQ(t.out.count_nonfinite(), t.out.numel());
            throw;
          }
        },
        Error);
  }
}

}  // namespace
