// Clear errors of the CUDA backend: the argument, its value, the limit and the fix, nothing written.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "flatattn/version.h"
#include "src/core/half.h"
#include "src/core/backend.h"
#include "src/cuda/dispatch.h"
#include "src/check/bad_inputs.h"
#include "src/check/case.h"
#include "tests/cuda/device_case.h"

namespace flatattn::check {
/// gtest prints a row by its name (not its bytes).
inline void PrintTo(const BadInput& r, std::ostream* os) { *os << r.name; }
}  // namespace flatattn::check

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;


namespace {

Error expect_error(CaseTensors& t, Error::Kind kind, const std::string& argument) {
  try {
    run_on_gpu(t);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_EQ(e.argument(), argument) << e.what();
    EXPECT_FALSE(e.limit().empty());
    EXPECT_FALSE(e.fix().empty());
    return e;
  }
  ADD_FAILURE() << "no error for " << t.c.name();
  return Error(kind, "", "", "", "");
}

Case small(std::int64_t d) {
  Case c;
  c.dtype = DType::f16;
  c.nq = c.nk = 16;
  c.d = d;
  return c;
}

}  // namespace

TEST(CudaErrors, BuiltAndListsInstances) {
  EXPECT_TRUE(cuda::built());
  EXPECT_TRUE(cuda_built());
  const std::string list = cuda::built_instances();
  EXPECT_NE(list.find("flash"), std::string::npos) << list;
  EXPECT_NE(list.find("D="), std::string::npos) << list;
}

TEST(CudaErrors, HeadDimLimits) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  CaseTensors t = make_case(small(264), rng);
  Error e = expect_error(t, Error::Kind::invalid_argument, "q");
  EXPECT_NE(e.value().find("264"), std::string::npos);
  // D not a multiple of 8 is served (staged, test_any_head_dim.cc), not refused.
}

TEST(CudaErrors, FlatRowTooLong) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  Case c = small(64);
  c.nk = 4096;
  c.options.dataflow = Dataflow::flat;
  CaseTensors t = make_case(c, rng);
  const Error e = expect_error(t, Error::Kind::unsupported, "options.dataflow");
  EXPECT_NE(e.limit().find("Nk <="), std::string::npos) << e.what();
}

// A view at an odd byte address cannot hold 2-byte elements: refused (views that are merely not 16-byte
// aligned are staged, test_any_head_dim.cc).
TEST(CudaErrors, OddAddressView) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  Case c = small(64);
  CaseTensors t = make_case(c, rng);
  void* buf = nullptr;
  ASSERT_EQ(cudaMalloc(&buf, t.q.bytes() + 16), cudaSuccess);
  ForwardArgs a;
  void* qk = nullptr;
  ASSERT_EQ(cudaMalloc(&qk, t.k.bytes() * 3), cudaSuccess);
  a.q = t.q.view(Device::cuda(0));
  a.q.data = static_cast<char*>(buf) + 1;
  a.k = t.k.view(Device::cuda(0));
  a.k.data = qk;
  a.v = t.v.view(Device::cuda(0));
  a.v.data = static_cast<char*>(qk) + t.k.bytes();
  a.out = t.out.view(Device::cuda(0));
  a.out.data = static_cast<char*>(qk) + 2 * t.k.bytes();
  try {
    forward(a, {});
    ADD_FAILURE() << "q at an odd address accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "q") << e.what();
    EXPECT_NE(e.limit().find("2-byte"), std::string::npos) << e.what();
  }
  cudaFree(buf);
  cudaFree(qk);
}

namespace {

/// Every element of a gradient's storage still holds the NaN poison (nothing was written).
bool untouched(const HostTensor& g) {
  for (std::int64_t e = 0; e < static_cast<std::int64_t>(g.bytes() / element_size(g.dtype)); ++e)
    if (!std::isnan(load_double(g.storage.data(), g.dtype, e))) return false;
  return true;
}

/// Runs the backward of t (after editing its device arguments) expecting an Error of `kind` naming
/// `argument` (with a limit and a fix) and dq, dk, dv untouched.
Error expect_backward_error(CaseTensors& t, Error::Kind kind, const std::string& argument,
                            const std::function<void(BackwardArgs&)>& edit = {}) {
  try {
    run_backward_on_gpu(t, false, edit);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_EQ(e.argument(), argument) << e.what();
    EXPECT_FALSE(e.limit().empty());
    EXPECT_FALSE(e.fix().empty());
    EXPECT_TRUE(untouched(t.dq) && untouched(t.dk) && untouched(t.dv)) << "gradients written before the error";
    return e;
  }
  ADD_FAILURE() << "no backward error for " << t.c.name();
  return Error(kind, "", "", "", "");
}

CaseTensors backward_case(std::int64_t d, std::mt19937_64& rng) {
  Case c = small(d);
  c.options.return_lse = true;
  CaseTensors t = make_case(c, rng, /*with_backward=*/true);
  t.out.fill_normal(rng());  // any finite forward results: these calls must fail before reading them
  t.lse.fill_normal(rng());
  return t;
}

}  // namespace

TEST(CudaErrors, BackwardHeadDimTooLarge) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  CaseTensors t = backward_case(264, rng);
  Error e = expect_backward_error(t, Error::Kind::invalid_argument, "q");
  EXPECT_NE(e.value().find("264"), std::string::npos) << e.what();
}

TEST(CudaErrors, BackwardOddAddressGradient) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  CaseTensors t = backward_case(64, rng);
  // dq starts 1 byte into its buffer; the real dq buffer must stay untouched.
  void* shifted = nullptr;
  ASSERT_EQ(cudaMalloc(&shifted, t.dq.bytes() + 16), cudaSuccess);
  expect_backward_error(t, Error::Kind::invalid_argument, "dq",
                        [&](BackwardArgs& a) { a.dq.data = static_cast<char*>(shifted) + 1; });
  cudaFree(shifted);
}

TEST(CudaErrors, BackwardWithoutLse) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  CaseTensors t = backward_case(64, rng);
  expect_backward_error(t, Error::Kind::invalid_argument, "lse", [](BackwardArgs& a) { a.lse = {}; });
}

// The bad-input table (src/check/bad_inputs.h) on CUDA: the same rows as the CPU's tests/cpu/test_bad_inputs.cc
// (but those on the contents of cu_seqlens / max_seqlen, which the kernels check: test_metadata.cc), each
// naming its argument with every device output (out, lse, dq, dk, dv, dsinks) unchanged byte for byte.
namespace {

/// Device copies of a case's tensors and the valid calls over them (f16, D = 64, ALiBi and sinks made and
/// left for the rows to attach).
struct DeviceValid {
  CaseTensors t;
  BadInputCall call;
  std::vector<std::pair<const HostTensor*, void*>> dev;
  explicit DeviceValid(bool varlen) {
    std::mt19937_64 rng(fresh_seed());
    Case c;
    c.dtype = DType::f16, c.batch = 2, c.nq = 5, c.nk = 7, c.hq = 4, c.hkv = 2, c.d = 64;
    c.options.return_lse = true;
    c.alibi = 1, c.sinks = true;
    if (varlen) c.varlen = true, c.seqlens_q = {3, 5}, c.seqlens_k = {7, 2};
    t = make_case(c, rng, /*with_backward=*/true);
    auto on = [&](const HostTensor& x) {
      void* p = nullptr;
      EXPECT_EQ(cudaMalloc(&p, x.bytes()), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(p, x.data(), x.bytes(), cudaMemcpyHostToDevice), cudaSuccess);
      dev.emplace_back(&x, p);
      TensorView v = x.view(Device::cuda(0));
      v.data = static_cast<char*>(p) + (static_cast<const char*>(x.view().data) - static_cast<const char*>(x.data()));
      return v;
    };
    ForwardArgs& f = call.fwd;
    f.q = on(t.q), f.k = on(t.k), f.v = on(t.v), f.out = on(t.out), f.lse = on(t.lse);
    if (varlen) {
      Varlen w = *t.varlen();
      w.cu_seqlens_q = on(t.cu_q), w.cu_seqlens_k = on(t.cu_k);
      f.varlen = w;
    }
    BackwardArgs& b = call.bwd;
    b.dout = on(t.dout), b.q = f.q, b.k = f.k, b.v = f.v, b.out = f.out, b.lse = f.lse, b.varlen = f.varlen;
    b.dq = on(t.dq), b.dk = on(t.dk), b.dv = on(t.dv);
    call.alibi = on(t.alibi), call.sinks = on(t.sinks), call.dsinks = on(t.dsinks);
    call.options = t.c.options;
  }
  ~DeviceValid() {
    for (auto& [x, p] : dev) cudaFree(p);
  }
  DeviceValid(const DeviceValid&) = delete;
  DeviceValid& operator=(const DeviceValid&) = delete;
  /// Whether every output's device bytes still equal the host tensor they were copied from.
  [[nodiscard]] std::string written() const {
    std::string w;
    for (const HostTensor* x : {&t.out, &t.lse, &t.dq, &t.dk, &t.dv, &t.dsinks})
      for (const auto& [h, p] : dev)
        if (h == x) {
          std::vector<unsigned char> back(x->bytes());
          EXPECT_EQ(cudaMemcpy(back.data(), p, back.size(), cudaMemcpyDeviceToHost), cudaSuccess);
          if (std::memcmp(back.data(), x->data(), back.size()) != 0) w += " tensor@" + std::to_string(x->bytes());
        }
    return w;
  }
};

class BadInputs : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputs, ErrorNamesTheArgumentAndOutputsUntouched) {
  REQUIRE_GPU();
  const BadInput& r = GetParam();
  if (r.host_metadata) GTEST_SKIP() << "cu_seqlens / max_seqlen contents are checked by the kernels on CUDA";
  DeviceValid v(r.varlen);
  std::string what;
  EXPECT_EQ(run_bad_input(r, v.call, {}, what), r.argument) << r.name << ": " << what;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(v.written(), "") << r.name << ": outputs written";
}

TEST(BadInputsBase, ValidCallsRunOnCuda) {
  REQUIRE_GPU();
  for (bool varlen : {false, true}) {
    DeviceValid v(varlen);
    EXPECT_NO_THROW(forward(v.call.fwd, v.call.options)) << "varlen " << varlen;
    EXPECT_NO_THROW(backward(v.call.bwd, v.call.options)) << "varlen " << varlen;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, BadInputs, ::testing::ValuesIn(bad_inputs().begin(), bad_inputs().end()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace

// Options::fp32_matmul = bf16 is a CPU engine option: refused on CUDA (unsupported, naming it), forward and
// backward, with the outputs untouched (the CUDA kernels have no f32 inputs to relax; bf16/f16 calls refuse it
// too rather than ignore it). run_backward_on_gpu brings dq back even when the call throws.
TEST(CudaErrors, Fp32MatmulIsRefused) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  for (const DType dt : {DType::bf16, DType::f16}) {
    Case c = small(64);
    c.dtype = dt;
    c.options.fp32_matmul = Fp32Matmul::bf16;
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    expect_error(t, Error::Kind::unsupported, "fp32_matmul");
    try {
      run_backward_on_gpu(t);
      ADD_FAILURE() << "no error for the backward";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "fp32_matmul") << e.what();
    }
    EXPECT_EQ(t.dq.count_nonfinite(), t.dq.numel()) << "dq was written before the Error";
  }
}
