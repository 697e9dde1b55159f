// Corner cases of the views (issue 20, item 3), on the CPU backend: the strides of dims of extent <= 1
// and of empty tensors are whatever an exporter (DLPack) reports and must not matter; empty problems
// (B = 0, Nq = 0) return without writing, Nk = 0 gives O = 0 and LSE = -inf (attention.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "flatattn/flatattn.h"
#include "src/check/case.h"
#include "src/core/backend.h"

using namespace flatattn;
using namespace flatattn::check;

namespace {

/// A varlen case with `rows` packed query and key rows in one sequence (0 or 1), forward + backward.
CaseTensors one_row_case(std::int32_t rows, std::mt19937_64& rng) {
  Case c;
  c.varlen = true;
  c.hq = 2;
  c.hkv = 1;
  c.d = 16;
  c.seqlens_q = {rows};
  c.seqlens_k = {rows};
  c.nq = c.nk = rows;
  c.options.return_lse = true;
  return make_case(c, rng, true);
}

/// `t` with the strides of its dims of extent <= 1 replaced by `s` (what exporters may report).
TensorView odd_strides(TensorView t, std::int64_t s) {
  for (int i = 0; i < t.rank; ++i)
    if (t.shape[i] <= 1) t.stride[i] = s;
  return t;
}

}  // namespace

TEST(CornerCases, VarlenZeroOrOneRowAnyStrideOfSizeOneDims) {
  std::mt19937_64 rng(fresh_seed());
  for (std::int32_t rows : {0, 1}) {
    for (std::int64_t s : {std::int64_t{0}, std::int64_t{1}, std::int64_t{7}, std::int64_t{-3}}) {
      CaseTensors a = one_row_case(rows, rng);
      CaseTensors b = a;  // the same inputs
      const Options o = a.c.options;
      forward(a.forward_args(), o);
      backward(a.backward_args(), o);
      ForwardArgs fb = b.forward_args();
      for (TensorView* v : {&fb.q, &fb.k, &fb.v, &fb.out, &fb.lse}) *v = odd_strides(*v, s);
      BackwardArgs bb = b.backward_args();
      for (TensorView* v : {&bb.dout, &bb.q, &bb.k, &bb.v, &bb.out, &bb.lse, &bb.dq, &bb.dk, &bb.dv})
        *v = odd_strides(*v, s);
      ASSERT_NO_THROW(forward(fb, o)) << rows << " rows, stride " << s;
      ASSERT_NO_THROW(backward(bb, o)) << rows << " rows, stride " << s;
      for (auto [x, y] : {std::pair{&a.out, &b.out}, std::pair{&a.lse, &b.lse}, std::pair{&a.dq, &b.dq},
                          std::pair{&a.dk, &b.dk}, std::pair{&a.dv, &b.dv}})
        EXPECT_EQ(std::memcmp(x->data(), y->data(), x->bytes()), 0) << rows << " rows, stride " << s;
    }
  }
}

TEST(CornerCases, EmptyBatchAndEmptyQueriesReturnWithoutWriting) {
  std::mt19937_64 rng(fresh_seed());
  for (auto [batch, nq] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {2, 0}}) {
    Case c;
    c.batch = batch;
    c.nq = nq;
    c.nk = 6;
    c.d = 8;
    c.options.return_lse = true;
    CaseTensors t = make_case(c, rng, true);
    ForwardArgs a = t.forward_args();
    for (TensorView* v : {&a.q, &a.out, &a.lse}) *v = odd_strides(*v, 0);  // empty views: any strides
    for (TensorView* v : {&a.q, &a.out}) v->stride[3] = 0;                // even a "non-contiguous" D
    EXPECT_NO_THROW(forward(a, c.options)) << "B = " << batch << ", Nq = " << nq;
    EXPECT_NO_THROW(backward(t.backward_args(), c.options)) << "B = " << batch << ", Nq = " << nq;
  }
}

TEST(CornerCases, NoKeysGiveZeroOutputAndMinusInfLse) {
  std::mt19937_64 rng(fresh_seed());
  Case c;
  c.batch = 2;
  c.nq = 3;
  c.nk = 0;
  c.d = 8;
  c.options.return_lse = true;
  CaseTensors t = make_case(c, rng, true);
  ASSERT_NO_THROW(forward(t.forward_args(), c.options));
  for (std::int64_t i = 0; i < t.out.numel(); ++i) EXPECT_EQ(t.out.at(i), 0.0) << i;
  for (std::int64_t i = 0; i < t.lse.numel(); ++i) EXPECT_EQ(t.lse.at(i), -std::numeric_limits<double>::infinity()) << i;
}

// check_errors (the explicit metadata report, include/flatattn/attention.h Varlen): a no-op on the CPU, whose
// metadata is checked before a call runs; a negative CUDA index is refused by name; a build without CUDA
// refuses CUDA devices as every CUDA call does. The CUDA behaviour: tests/cuda Metadata.CheckErrorsRaisesPending.
TEST(CornerCases, CheckErrorsHost) {
  EXPECT_NO_THROW(flatattn::check_errors(flatattn::Device::cpu()));
  try {
    flatattn::check_errors(flatattn::Device::cuda(-1));
    ADD_FAILURE() << "no Error for device -1";
  } catch (const flatattn::Error& e) {
    EXPECT_EQ(e.argument(), "device") << e.what();
  }
  if (!flatattn::cuda::built()) {
    try {
      flatattn::check_errors(flatattn::Device::cuda(0));
      ADD_FAILURE() << "no Error without a CUDA backend";
    } catch (const flatattn::Error& e) {
      EXPECT_EQ(e.kind(), flatattn::Error::Kind::unsupported) << e.what();
    }
  }
}
