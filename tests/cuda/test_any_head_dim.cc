// Head dims that are not multiples of 8, and views whose rows are not 16-byte aligned, on CUDA: the
// backend stages them through a zero-padded workspace (src/cuda/staging.h) instead of refusing them.
// Staging runs the very kernels of the padded problem, so its results must equal, bit for bit, a
// manual zero padding of q, k, v (and dout, out) to D8 = round_up(D, 8) with the unpadded scale, on every
// family and dataflow (the backward in its deterministic mode, whose sums do not depend on timing).
// Against the fp64 oracle the feature table's d* rows judge them (test_features.cc).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "src/check/case.h"
#include "src/core/problem.h"
#include "src/cuda/check_args.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

std::int64_t round_up8(std::int64_t d) { return (d + 7) / 8 * 8; }

/// x (logical (..., D), any layout) with its last dim zero-padded to d8, contiguous.
HostTensor pad_last(const HostTensor& x, std::int64_t d8) {
  std::vector<std::int64_t> shape = x.shape;
  const std::int64_t d = shape.back();
  shape.back() = d8;
  HostTensor y = HostTensor::make(x.dtype, shape);
  const std::int64_t rows = d == 0 ? 0 : x.numel() / d;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < d8; ++c) y.set(r * d8 + c, c < d ? x.at(r * d + c) : 0.0);
  return y;
}

/// Expects a (..., D) to equal the first D columns of b (..., D8) exactly (NaN, i.e. an unwritten
/// element, never equals), and b's columns D..D8 to be `pad` (NaN: not checked).
void expect_same_columns(const HostTensor& a, const HostTensor& b, double pad, const std::string& what) {
  const std::int64_t d = a.shape.back(), d8 = b.shape.back();
  const std::int64_t rows = d == 0 ? 0 : a.numel() / d;
  ASSERT_EQ(rows * d8, b.numel()) << what;
  std::int64_t bad = 0, bad_pad = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < d; ++c) {
      const double x = a.at(r * d + c), y = b.at(r * d8 + c);
      if (!(x == y) && bad++ < 3) ADD_FAILURE() << what << ": row " << r << " col " << c << ": " << x << " vs " << y;
    }
    if (!std::isnan(pad))
      for (std::int64_t c = d; c < d8; ++c)
        if (b.at(r * d8 + c) != pad) ++bad_pad;
  }
  EXPECT_EQ(bad, 0) << what;
  EXPECT_EQ(bad_pad, 0) << what << ": padding columns of the padded run are not " << pad;
}

/// Expects two tensors of one shape to hold equal elements (LSE).
void expect_same(const HostTensor& a, const HostTensor& b, const std::string& what) {
  ASSERT_EQ(a.numel(), b.numel()) << what;
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (!(a.at(i) == b.at(i)) && bad++ < 3) ADD_FAILURE() << what << ": " << i << ": " << a.at(i) << " vs " << b.at(i);
  EXPECT_EQ(bad, 0) << what;
}

/// The case of head dim d, and its manually padded twin (D8 columns, zeros past d, the scale of d).
struct Twin {
  CaseTensors t, tp;
};

Twin make_twin(const Case& c, std::uint64_t seed) {
  Twin w;
  w.t = make_case(c, seed, /*with_backward=*/true);
  Case cp = c;
  cp.d = round_up8(c.d);
  cp.strided = false;
  cp.options.softmax_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d)));  // validate's
  w.tp = make_case(cp, seed, /*with_backward=*/true);
  w.tp.q = pad_last(w.t.q, cp.d);
  w.tp.k = pad_last(w.t.k, cp.d);
  w.tp.v = pad_last(w.t.v, cp.d);
  w.tp.dout = pad_last(w.t.dout, cp.d);
  return w;
}

}  // namespace

TEST(CudaAnyHeadDim, StagedEqualsManualZeroPadding) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaAnyHeadDim.StagedEqualsManualZeroPadding");
  std::mt19937_64 rng(seed);
  for (const char* sm90 : {"0", static_cast<const char*>(nullptr)}) {
    const ScopedSm90 policy(sm90);
    for (DType dt : {DType::f16, DType::bf16}) {
      if (!dtype_runs(dt)) continue;
      for (std::int64_t d : {1, 3, 59, 111, 199, 255}) {
        for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
          Case c;
          c.dtype = dt;
          c.batch = 2, c.nq = 77, c.nk = 93, c.hq = 4, c.hkv = 2, c.d = d;
          c.options.causal = true;
          c.options.return_lse = true;
          c.options.deterministic = true;
          c.options.dataflow = df;
          Twin w = make_twin(c, rng());
          const std::string what = c.name() + (sm90 ? " (default family)" : " (sm80 family)");
          Report r;
          try {
            r = run_on_gpu(w.t);
          } catch (const Error& e) {
            // FLAT rows hold whole key rows: a head dim whose tile cannot hold Nk = 93 is refused alike
            // for the padded twin (same kernel D): not a staging failure.
            if (df == Dataflow::flat && e.kind() == Error::Kind::unsupported) continue;
            throw;
          }
          EXPECT_NE(r.kernel.find("D=" + std::to_string(d) + " zero-padded"), std::string::npos) << what << ": " << r.kernel;
          run_on_gpu(w.tp);
          expect_same_columns(w.t.out, w.tp.out, 0.0, what + ", out");
          expect_same(w.t.lse, w.tp.lse, what + ", lse");
          // Backward from the same forward results: the staged path pads out like the twin's.
          w.tp.out = pad_last(w.t.out, round_up8(d));
          w.tp.lse = w.t.lse;
          run_backward_on_gpu(w.t);
          run_backward_on_gpu(w.tp);
          expect_same_columns(w.t.dq, w.tp.dq, 0.0, what + ", dq");
          expect_same_columns(w.t.dk, w.tp.dk, 0.0, what + ", dk");
          expect_same_columns(w.t.dv, w.tp.dv, 0.0, what + ", dv");
        }
      }
    }
  }
}

namespace {

/// A device buffer holding a host tensor's bytes `shift` bytes past a 256-byte aligned allocation.
class ShiftedCopy {
 public:
  ShiftedCopy(const HostTensor& h, std::size_t shift) : shift_(shift), bytes_(h.bytes()) {
    EXPECT_EQ(cudaMalloc(&base_, bytes_ + 16), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data(), h.storage.data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~ShiftedCopy() { cudaFree(base_); }
  ShiftedCopy(const ShiftedCopy&) = delete;
  ShiftedCopy& operator=(const ShiftedCopy&) = delete;
  [[nodiscard]] void* data() const { return static_cast<char*>(base_) + shift_; }
  void to_host(HostTensor& h) const {
    EXPECT_EQ(cudaMemcpy(h.storage.data(), data(), bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
  }

 private:
  void* base_ = nullptr;
  std::size_t shift_, bytes_;
};

}  // namespace

// A view 2 bytes into its buffer (rows no longer 16-byte aligned) was refused; it is staged now, and
// only it: the result equals the aligned call's bit for bit (D % 8 == 0: the same kernel on the same
// values).
TEST(CudaAnyHeadDim, UnalignedViewsAreStaged) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaAnyHeadDim.UnalignedViewsAreStaged");
  Case c;
  c.dtype = DType::f16;
  c.batch = 2, c.nq = 70, c.nk = 90, c.hq = 4, c.hkv = 2, c.d = 64;
  c.options.return_lse = true;
  c.options.deterministic = true;
  CaseTensors ref = make_case(c, seed, /*with_backward=*/true);
  run_on_gpu(ref);
  run_backward_on_gpu(ref);

  // Forward with q and out shifted.
  CaseTensors t = make_case(c, seed, /*with_backward=*/true);
  {
    ShiftedCopy q(t.q, 2), k(t.k, 0), v(t.v, 0), out(t.out, 2), lse(t.lse, 0);
    ForwardArgs a = t.forward_args(Device::cuda(0));
    a.q.data = q.data(), a.k.data = k.data(), a.v.data = v.data(), a.out.data = out.data(), a.lse.data = lse.data();
    const Report r = forward(a, c.options);
    EXPECT_EQ(r.kernel.find("zero-padded"), std::string::npos) << r.kernel;  // D = 64: nothing padded
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    out.to_host(t.out);
    lse.to_host(t.lse);
  }
  expect_same(ref.out, t.out, "out through a shifted q and out");
  expect_same(ref.lse, t.lse, "lse through a shifted q and out");

  // Backward with dout, k and dq shifted.
  ShiftedCopy dout(t.dout, 2), k(t.k, 2), dq(t.dq, 2);
  run_backward_on_gpu(t, false, [&](BackwardArgs& a) {
    a.dout.data = dout.data();
    a.k.data = k.data();
    a.dq.data = dq.data();
  });
  dq.to_host(t.dq);
  expect_same(ref.dq, t.dq, "dq through shifted dout, k and dq");
  expect_same(ref.dk, t.dk, "dk through shifted dout, k and dq");
  expect_same(ref.dv, t.dv, "dv through shifted dout, k and dq");
}

// Varlen with odd D: the staged outputs are copied back only for the rows of the sequences, as the kernels
// write them; packed rows past cu_seqlens[B] keep the caller's bytes (poison here).
TEST(CudaAnyHeadDim, VarlenRowsPastTheSequencesUntouched) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaAnyHeadDim.VarlenRowsPastTheSequencesUntouched");
  Case c;
  c.dtype = DType::f16;
  c.hq = 4, c.hkv = 2, c.d = 59;
  c.varlen = true;
  c.seqlens_q = {3, 40, 0, 25};
  c.seqlens_k = {7, 33, 5, 30};
  c.batch = 4;
  c.options.causal = true;
  c.options.return_lse = true;
  CaseTensors t = make_case(c, seed, /*with_backward=*/true);
  // The last sequence ends 6 query and 4 key rows before the packed tensors do.
  auto* cq = static_cast<std::int32_t*>(t.cu_q.data());
  auto* ck = static_cast<std::int32_t*>(t.cu_k.data());
  cq[4] -= 6;
  ck[4] -= 4;
  const std::int64_t row_q = t.q.numel() / t.q.shape[0], row_k = t.k.numel() / t.k.shape[0];
  auto rows_poisoned = [](const HostTensor& x, std::int64_t first_row, std::int64_t row) {
    for (std::int64_t i = first_row * row; i < x.numel(); ++i)
      if (!std::isnan(x.at(i))) return false;
    return true;
  };
  auto rows_finite = [](const HostTensor& x, std::int64_t end_row, std::int64_t row) {
    for (std::int64_t i = 0; i < end_row * row; ++i)
      if (!std::isfinite(x.at(i))) return false;
    return true;
  };
  run_on_gpu(t);
  EXPECT_TRUE(rows_poisoned(t.out, cq[4], row_q)) << "out rows past cu_seqlens_q[B] written";
  EXPECT_TRUE(rows_finite(t.out, cq[4], row_q)) << "out rows of the sequences not written";
  for (std::int64_t i = cq[4] * row_q; i < t.out.numel(); ++i) t.out.set(i, 0.0);  // any finite out for the backward
  for (std::int64_t h = 0; h < c.hq; ++h)
    for (std::int64_t r = cq[4]; r < t.lse.shape[1]; ++r) t.lse.set(h * t.lse.shape[1] + r, 0.0);
  run_backward_on_gpu(t);
  EXPECT_TRUE(rows_poisoned(t.dq, cq[4], row_q)) << "dq rows past cu_seqlens_q[B] written";
  EXPECT_TRUE(rows_poisoned(t.dk, ck[4], row_k)) << "dk rows past cu_seqlens_k[B] written";
  EXPECT_TRUE(rows_poisoned(t.dv, ck[4], row_k)) << "dv rows past cu_seqlens_k[B] written";
  EXPECT_TRUE(rows_finite(t.dq, cq[4], row_q) && rows_finite(t.dk, ck[4], row_k) && rows_finite(t.dv, ck[4], row_k))
      << "gradient rows of the sequences not written";
}

// Which views the kernels address directly (no GPU needed): D a multiple of 8 and every stride that
// moves between rows a multiple of 8 elements with 16-byte aligned data; extents of 1 take any stride.
TEST(CudaAnyHeadDim, WhichViewsAreStaged) {
  Problem p;
  p.batch = 2, p.nq = 5, p.nk = 7, p.hq = 4, p.hkv = 2, p.d = 64;
  alignas(16) static std::uint16_t buf[64];
  const void* aligned = buf;
  const void* shifted = buf + 1;
  const RowStrides dense{5 * 4 * 64, 4 * 64, 64};
  EXPECT_TRUE(cuda::kernel_addressable(p, aligned, dense, p.nq, p.hq));
  EXPECT_FALSE(cuda::kernel_addressable(p, shifted, dense, p.nq, p.hq));
  EXPECT_FALSE(cuda::kernel_addressable(p, aligned, {5 * 4 * 68 + 4, 4 * 68, 68}, p.nq, p.hq));  // rows of 68
  EXPECT_TRUE(cuda::kernel_addressable(p, aligned, {5 * 4 * 72, 4 * 72, 72}, p.nq, p.hq));
  EXPECT_FALSE(cuda::kernel_addressable(p, aligned, {5 * 4 * 64 + 2, 4 * 64, 64}, p.nq, p.hq));  // batch stride
  EXPECT_TRUE(cuda::kernel_addressable(p, aligned, {5 * 4 * 64, 4 * 64, 3}, p.nq, 1));  // one head: any head stride
  EXPECT_TRUE(cuda::kernel_addressable(p, aligned, {5 * 4 * 64, 3, 64}, 1, p.hq));  // one row: any row stride
  p.batch = 1;
  EXPECT_TRUE(cuda::kernel_addressable(p, aligned, {3, 4 * 64, 64}, p.nq, p.hq));  // one batch: any batch stride
  p.varlen = true;  // the packed rows' stride counts whatever max_seqlen says
  EXPECT_FALSE(cuda::kernel_addressable(p, aligned, {0, 4 * 64 + 4, 64}, 1, p.hq));
  p.varlen = false;
  for (std::int64_t d : {1, 3, 59, 111, 199, 255}) {
    p.d = d;
    EXPECT_FALSE(cuda::kernel_addressable(p, aligned, {5 * 4 * 256, 4 * 256, 256}, p.nq, p.hq)) << "D = " << d;
  }
}
