// The bad-input table (src/check/bad_inputs.h) on the CPU: every row throws an Error naming its argument and
// leaves every output (out, lse, dq, dk, dv, dsinks) byte for byte as it was. The CUDA side runs the same
// table in tests/cuda/test_errors.cc (BadInputs.*).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <ostream>
#include <string>
#include <vector>

#include "src/check/bad_inputs.h"
#include "src/check/case.h"

namespace flatattn::check {
/// gtest prints a row by its name (not its bytes).
inline void PrintTo(const BadInput& r, std::ostream* os) { *os << r.name; }
}  // namespace flatattn::check

using namespace flatattn;
using namespace flatattn::check;

namespace {

/// The valid calls' tensors: batched (B 2, Nq 5, Nk 7, Hq 4, Hkv 2, D 64) or varlen, f16, with ALiBi slopes and
/// sinks made (and left out of the valid call: rows attach them).
struct Valid {
  CaseTensors t;
  BadInputCall call;
  explicit Valid(bool varlen) {
    std::mt19937_64 rng(fresh_seed());
    Case c;
    c.dtype = DType::f16, c.batch = 2, c.nq = 5, c.nk = 7, c.hq = 4, c.hkv = 2, c.d = 64;
    c.options.return_lse = true;
    c.alibi = 1, c.sinks = true;
    if (varlen) c.varlen = true, c.seqlens_q = {3, 5}, c.seqlens_k = {7, 2};
    t = make_case(c, rng, /*with_backward=*/true);
    call.fwd = t.forward_args();
    call.bwd = t.backward_args();
    call.alibi = call.fwd.alibi_slopes, call.sinks = call.fwd.sinks, call.dsinks = call.bwd.dsinks;
    call.fwd.alibi_slopes = call.fwd.sinks = {};
    call.bwd.alibi_slopes = call.bwd.sinks = call.bwd.dsinks = {};
    call.options = t.c.options;
  }
  [[nodiscard]] std::vector<std::vector<unsigned char>> outputs() const {
    return std::vector<std::vector<unsigned char>>{
        {t.out.storage.begin(), t.out.storage.end()}, {t.lse.storage.begin(), t.lse.storage.end()},
        {t.dq.storage.begin(), t.dq.storage.end()},   {t.dk.storage.begin(), t.dk.storage.end()},
        {t.dv.storage.begin(), t.dv.storage.end()},   {t.dsinks.storage.begin(), t.dsinks.storage.end()}};
  }
};

class BadInputs : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputs, ErrorNamesTheArgumentAndOutputsUntouched) {
  const BadInput& r = GetParam();
  Valid v(r.varlen);
  const auto before = v.outputs();
  std::string what;
  EXPECT_EQ(run_bad_input(r, v.call, {}, what), r.argument) << r.name << ": " << what;
  EXPECT_NE(what.find("fix:"), std::string::npos) << what;
  const auto after = v.outputs();
  const char* names[] = {"out", "lse", "dq", "dk", "dv", "dsinks"};
  for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(before[i] == after[i]) << names[i] << " was written";
}

// The valid calls themselves pass (a row's error is its own, not the base call's).
TEST(BadInputsBase, ValidCallsRun) {
  for (bool varlen : {false, true}) {
    Valid v(varlen);
    EXPECT_NO_THROW(forward(v.call.fwd, v.call.options)) << "varlen " << varlen;
    EXPECT_NO_THROW(backward(v.call.bwd, v.call.options)) << "varlen " << varlen;
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, BadInputs, ::testing::ValuesIn(bad_inputs().begin(), bad_inputs().end()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
