// CUDA corner cases of the views (issue 20, item 3): varlen with 0 or 1 packed rows runs whatever strides
// an exporter (DLPack) reports for the size-1 dims -- the same bits as with the natural strides -- and
// empty problems return without error.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <vector>

#include "flatattn/attention.h"
#include "src/core/half.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::testing;

namespace {

struct Buf {
  void* p = nullptr;
  explicit Buf(std::size_t bytes) { EXPECT_EQ(cudaMalloc(&p, bytes < 256 ? 256 : bytes), cudaSuccess); }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

/// out of a varlen forward with `rows` (0 or 1) packed rows, D = 64, Hq = 2, Hkv = 1, the strides of the
/// size-1 dims replaced by s (0: natural).
std::vector<std::uint16_t> run(DType dt, int rows, std::int64_t s, const std::vector<std::uint16_t>& qkv) {
  constexpr std::int64_t d = 64, hq = 2, hkv = 1;
  Buf q(2 * hq * d), k(2 * hkv * d), v(2 * hkv * d), out(2 * hq * d), cu(8);
  EXPECT_EQ(cudaMemcpy(q.p, qkv.data(), 2 * hq * d, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(k.p, qkv.data(), 2 * hkv * d, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(v.p, qkv.data() + hq * d, 2 * hkv * d, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemset(out.p, 0xff, 2 * hq * d), cudaSuccess);
  const int offsets[2] = {0, rows};
  EXPECT_EQ(cudaMemcpy(cu.p, offsets, sizeof offsets, cudaMemcpyHostToDevice), cudaSuccess);
  auto view = [&](void* p, std::int64_t h) {
    TensorView t = TensorView::contiguous(p, dt, {rows, h, d}, Device::cuda(0));
    if (s != 0) {
      if (rows <= 1) t.stride[0] = s;
      if (h <= 1) t.stride[1] = s;
    }
    return t;
  };
  ForwardArgs a;
  a.q = view(q.p, hq), a.k = view(k.p, hkv), a.v = view(v.p, hkv), a.out = view(out.p, hq);
  Varlen w;
  w.cu_seqlens_q = TensorView::contiguous(cu.p, DType::i32, {2}, Device::cuda(0));
  w.cu_seqlens_k = w.cu_seqlens_q;
  w.max_seqlen_q = w.max_seqlen_k = rows;
  a.varlen = w;
  forward(a, Options{});  // throws: an unserved build (unsupported) skips, anything else fails the test
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<std::uint16_t> h(static_cast<std::size_t>(hq * d));
  EXPECT_EQ(cudaMemcpy(h.data(), out.p, h.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

}  // namespace

TEST(CudaCornerCases, VarlenZeroOrOneRowAnyStrideOfSizeOneDims) {
  REQUIRE_GPU();
  std::mt19937_64 rng(seed_for("CudaCornerCases"));
  std::normal_distribution<float> nd;
  std::vector<std::uint16_t> qkv(256);
  for (auto& x : qkv) x = float_to_f16(nd(rng));
  for (int rows : {0, 1}) {
    try {
      const std::vector<std::uint16_t> natural = run(DType::f16, rows, 0, qkv);
      for (std::int64_t s : {std::int64_t{1}, std::int64_t{7}, std::int64_t{-3}})
        EXPECT_EQ(run(DType::f16, rows, s, qkv), natural) << rows << " rows, stride " << s;
    } catch (const Error& e) {
      if (e.kind() == Error::Kind::unsupported) GTEST_SKIP() << e.what();
      throw;
    }
  }
}
