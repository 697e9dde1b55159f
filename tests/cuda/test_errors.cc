// Clear errors of the CUDA backend: the argument, its value, the limit and the fix, nothing written.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <random>
#include <string>

#include "flatattn/version.h"
#include "src/core/backend.h"
#include "src/cuda/dispatch.h"
#include "tests/common/harness.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::testing;

#define REQUIRE_GPU() \
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device"

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
  t = make_case(small(20), rng);
  e = expect_error(t, Error::Kind::invalid_argument, "q");
  EXPECT_NE(e.limit().find("multiple of 8"), std::string::npos) << e.what();
}

TEST(CudaErrors, FlatRowTooLong) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  Case c = small(64);
  c.nk = 4096;
  c.options.dataflow = Dataflow::flat;
  CaseTensors t = make_case(c, rng);
  const Error e = expect_error(t, Error::Kind::invalid_argument, "options.dataflow");
  EXPECT_NE(e.limit().find("Nk <="), std::string::npos) << e.what();
}

TEST(CudaErrors, MisalignedView) {
  REQUIRE_GPU();
  std::mt19937_64 rng(fresh_seed());
  Case c = small(64);
  CaseTensors t = make_case(c, rng);
  // q viewed 2 bytes into a device buffer: not 16-byte aligned.
  void* buf = nullptr;
  ASSERT_EQ(cudaMalloc(&buf, t.q.bytes() + 16), cudaSuccess);
  ForwardArgs a;
  void* qk = nullptr;
  ASSERT_EQ(cudaMalloc(&qk, t.k.bytes() * 3), cudaSuccess);
  a.q = t.q.view(Device::cuda(0));
  a.q.data = static_cast<char*>(buf) + 2;
  a.k = t.k.view(Device::cuda(0));
  a.k.data = qk;
  a.v = t.v.view(Device::cuda(0));
  a.v.data = static_cast<char*>(qk) + t.k.bytes();
  a.out = t.out.view(Device::cuda(0));
  a.out.data = static_cast<char*>(qk) + 2 * t.k.bytes();
  try {
    forward(a, {});
    ADD_FAILURE() << "misaligned q accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "q") << e.what();
    EXPECT_NE(e.limit().find("16-byte"), std::string::npos) << e.what();
  }
  cudaFree(buf);
  cudaFree(qk);
}

TEST(CudaErrors, BackwardIsNotBuiltYet) {
  std::mt19937_64 rng(1);
  Case c = small(64);
  CaseTensors t = make_case(c, rng, /*with_backward=*/true);
  Problem p;
  p.device = Device::cuda(0);
  try {
    cuda::backward(p, BwdTensors{}, Stream{});
    ADD_FAILURE() << "cuda::backward returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::unsupported);
    EXPECT_NE(std::string(e.what()).find("not built yet"), std::string::npos) << e.what();
  }
}
