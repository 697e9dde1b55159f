// 64-bit safety of the CUDA kernels and launchers (issue 20, item 7): the second sequence of every tensor
// (q, k, v, out, dout, dq, dk, dv; lse, fp32) starts 2^31 + 4096 elements after the first, so every element
// offset of its rows needs 64 bits; forward and deterministic backward on those views equal, bit for bit, the
// same problem in compact tensors (run_on_gpu / run_backward_on_gpu of the case). One 4 GiB buffer holds all
// the 16-bit tensors (each in its own region of a slot) and one 8 GiB buffer the lse; skipped where the device
// has less than 14 GiB free. Each family (sm80 forced, the default policy) and both dtypes, a GQA causal case.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "src/core/half.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

constexpr std::int64_t kSlot = (std::int64_t{1} << 31) + 4096;  ///< batch stride in elements: past int32

/// A device buffer (freed on scope exit).
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(std::size_t bytes) {
    if (cudaMalloc(&p, bytes) != cudaSuccess) p = nullptr, (void)cudaGetLastError();
  }
  ~DeviceBuffer() {
    if (p) cudaFree(p);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

/// Host tensor x (B = 2, N, H, D) to/from slot layout at element `base` of buffer `buf`: sequence b at
/// b * kSlot + base, its (N, H, D) rows compact.
void to_device(const HostTensor& x, void* buf, std::int64_t base, DType dt) {
  const std::int64_t per = x.numel() / 2, es = static_cast<std::int64_t>(element_size(dt));
  std::vector<char> h(static_cast<std::size_t>(per * es));
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t i = 0; i < per; ++i) store_double(h.data(), dt, i, x.at(b * per + i));
    ASSERT_EQ(cudaMemcpy(static_cast<char*>(buf) + (b * kSlot + base) * es, h.data(), h.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
}
std::vector<double> from_device(std::int64_t per, const void* buf, std::int64_t base, DType dt) {
  const std::int64_t es = static_cast<std::int64_t>(element_size(dt));
  std::vector<char> h(static_cast<std::size_t>(per * es));
  std::vector<double> out;
  for (std::int64_t b = 0; b < 2; ++b) {
    EXPECT_EQ(cudaMemcpy(h.data(), static_cast<const char*>(buf) + (b * kSlot + base) * es, h.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    for (std::int64_t i = 0; i < per; ++i) out.push_back(load_double(h.data(), dt, i));
  }
  return out;
}

std::int64_t differing(const HostTensor& want, const std::vector<double>& got) {
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < want.numel(); ++i) {
    const double a = got[static_cast<std::size_t>(i)], b = want.at(i);
    n += !(a == b || (std::isnan(a) && std::isnan(b)));
  }
  return n;
}

class LargeOffsets : public ::testing::TestWithParam<const char*> {};  // FLATATTN_CUDA_SM90: "0" or unset

TEST_P(LargeOffsets, SequencesPast2To31ElementsMatchCompact) {
  REQUIRE_GPU();
  std::size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  if (free_b < (std::size_t{14} << 30)) GTEST_SKIP() << "needs 14 GiB free, the device has " << (free_b >> 20) << " MiB";
  const ScopedSm90 policy(GetParam());
  const std::uint64_t seed = seed_for("LargeOffsets");
  std::mt19937_64 rng(seed);
  DeviceBuffer big(static_cast<std::size_t>(kSlot + (1 << 20)) * 2), lse_buf(static_cast<std::size_t>(kSlot + 4096) * 4);
  ASSERT_NE(big.p, nullptr);
  ASSERT_NE(lse_buf.p, nullptr);
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    Case c;
    c.dtype = dt, c.batch = 2, c.nq = 130, c.nk = 150, c.hq = 4, c.hkv = 2, c.d = 64;
    c.options.causal = true;
    c.options.return_lse = true;
    c.options.deterministic = true;
    SCOPED_TRACE(c.name() + " seed " + std::to_string(seed));
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    const Report rf = run_on_gpu(t);
    run_backward_on_gpu(t);

    // The same problem in slot layout: regions of 2^16 elements per tensor within a slot.
    const std::int64_t qn = c.nq * c.hq * c.d, kn = c.nk * c.hkv * c.d, r = 1 << 16;
    ASSERT_LE(std::max(qn, kn), r);
    enum { Q, K, V, O, DO, DQ, DK, DV };
    auto at = [&](int i) { return static_cast<std::int64_t>(i) * r; };
    auto view = [&](int i, std::int64_t n, std::int64_t h) {
      return TensorView::strided(static_cast<char*>(big.p) + at(i) * 2, dt, {2, n, h, c.d}, {kSlot, h * c.d, c.d, 1},
                                 Device::cuda(0));
    };
    to_device(t.q, big.p, at(Q), dt), to_device(t.k, big.p, at(K), dt), to_device(t.v, big.p, at(V), dt);
    to_device(t.dout, big.p, at(DO), dt);
    ForwardArgs fa;
    fa.q = view(Q, c.nq, c.hq), fa.k = view(K, c.nk, c.hkv), fa.v = view(V, c.nk, c.hkv), fa.out = view(O, c.nq, c.hq);
    fa.lse = TensorView::strided(lse_buf.p, DType::f32, {2, c.hq, c.nq}, {kSlot, c.nq, 1}, Device::cuda(0));
    const Report rb_f = forward(fa, c.options);
    EXPECT_EQ(rb_f.kernel, rf.kernel) << "the slot views must take the compact run's kernel (no staging)";
    BackwardArgs ba;
    ba.dout = view(DO, c.nq, c.hq), ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.lse = fa.lse;
    ba.dq = view(DQ, c.nq, c.hq), ba.dk = view(DK, c.nk, c.hkv), ba.dv = view(DV, c.nk, c.hkv);
    backward(ba, c.options);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(differing(t.out, from_device(qn, big.p, at(O), dt)), 0) << "out (" << rf.kernel << ")";
    EXPECT_EQ(differing(t.dq, from_device(qn, big.p, at(DQ), dt)), 0) << "dq";
    EXPECT_EQ(differing(t.dk, from_device(kn, big.p, at(DK), dt)), 0) << "dk";
    EXPECT_EQ(differing(t.dv, from_device(kn, big.p, at(DV), dt)), 0) << "dv";
    const std::vector<double> lse = from_device(c.hq * c.nq, lse_buf.p, 0, DType::f32);
    EXPECT_EQ(differing(t.lse, lse), 0) << "lse";
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, LargeOffsets, ::testing::Values("0", nullptr),
                         [](const auto& info) { return std::string(info.param ? "sm80" : "default"); });

}  // namespace
