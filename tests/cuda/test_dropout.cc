// Dropout on the GPU beyond the feature table (tests/cuda/test_features.cc runs the dropout* rows against the
// fp64 oracle on every family): the CUDA dropout_mask() equals the CPU's bit for bit; every kernel family's
// forward (Flash and FLAT) and backward apply exactly that mask, read back from O and dV of a probe case; the
// deterministic backward is bitwise reproducible with dropout.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "src/cuda/dispatch.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

Options dropout_options(std::mt19937_64& rng, float p) {
  Options o;
  o.dropout_p = p;
  o.dropout_seed = rng();
  o.dropout_offset = rng();
  o.return_lse = true;
  return o;
}

std::vector<std::uint8_t> cpu_mask(std::int64_t b, std::int64_t h, std::int64_t nq, std::int64_t nk, const Options& o) {
  std::vector<std::uint8_t> m(b * h * nq * nk);
  dropout_mask(m.data(), Device::cpu(), b, h, nq, nk, o);
  return m;
}

TEST(CudaDropout, MaskEqualsCpuBitwise) {
  REQUIRE_GPU();
  std::mt19937_64 rng(seed_for("CudaDropout.MaskEqualsCpuBitwise"));
  for (auto [b, h, nq, nk] : {std::tuple{1, 1, 1, 1}, std::tuple{2, 3, 97, 130}, std::tuple{3, 5, 64, 33},
                              std::tuple{1, 2, 300, 1025}}) {
    for (float p : {0.1f, 0.5f, 0.9f}) {
      const Options o = dropout_options(rng, p);
      const std::vector<std::uint8_t> want = cpu_mask(b, h, nq, nk, o);
      std::uint8_t* d = nullptr;
      ASSERT_EQ(cudaMalloc(&d, want.size()), cudaSuccess);
      ASSERT_EQ(cudaMemset(d, 0xAB, want.size()), cudaSuccess);
      dropout_mask(d, Device::cuda(0), b, h, nq, nk, o);
      std::vector<std::uint8_t> got(want.size());
      ASSERT_EQ(cudaMemcpy(got.data(), d, got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
      cudaFree(d);
      EXPECT_EQ(got, want) << "B" << b << " Hq" << h << " Nq" << nq << " Nk" << nk << " p=" << p;
    }
  }
}

constexpr std::int64_t kB = 2, kH = 2;

/// q = k = 0 (P = 1 / N), v = identity (D = N), dout = identity: O[b, i, h, j] and dV[b, j, h, i] are
/// Z_ij / ((1 - p) N), so both show the mask (N = Nq = Nk = D).
CaseTensors probe_case(DType dt, std::int64_t n, const Options& o) {
  Case c;
  c.dtype = dt, c.batch = kB, c.nq = n, c.nk = n, c.hq = kH, c.hkv = kH, c.d = n;
  c.options = o;
  CaseTensors t = make_case(c, 1, true);
  for (std::int64_t x = 0; x < t.q.numel(); ++x) t.q.set(x, 0.0), t.k.set(x, 0.0);
  for (std::int64_t x = 0; x < t.v.numel(); ++x) {
    const std::int64_t d = x % n, r = (x / (n * kH)) % n;
    t.v.set(x, r == d ? 1.0 : 0.0);
    t.dout.set(x, r == d ? 1.0 : 0.0);
  }
  return t;
}

/// The mask read from (B, N, H, N) values Z / ((1 - p) N) (2 % for the dtype's rounding of P and 1 / (1 - p));
/// 3 marks a value that is neither 0 nor the kept one.
std::vector<std::uint8_t> read_mask(const HostTensor& x, std::int64_t n, float p, bool transposed) {
  std::vector<std::uint8_t> m(kB * kH * n * n, 2);
  const double kept = 1.0 / ((1.0 - p) * n);
  for (std::int64_t b = 0; b < kB; ++b)
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t h = 0; h < kH; ++h)
        for (std::int64_t c = 0; c < n; ++c) {
          const double v = x.at(((b * n + r) * kH + h) * n + c);
          const std::int64_t i = transposed ? c : r, j = transposed ? r : c;
          m[((b * kH + h) * n + i) * n + j] = v == 0.0 ? 0 : std::abs(v - kept) <= 0.02 * kept ? 1 : 3;
        }
  return m;
}

TEST(CudaDropout, EveryFamilyAppliesTheMaskOfDropoutMask) {
  REQUIRE_GPU();
  std::mt19937_64 rng(seed_for("CudaDropout.EveryFamilyAppliesTheMaskOfDropoutMask"));
  for (const char* sm90 : {"0", static_cast<const char*>(nullptr)}) {  // sm80 family; the default (sm90 where it loads)
    const ScopedSm90 policy(sm90);
    for (DType dt : {DType::f16, DType::bf16}) {
      if (!dtype_runs(dt)) continue;
      for (std::int64_t n : {64, 128}) {
        for (float p : {0.17f, 0.5f}) {
          const Options o = dropout_options(rng, p);
          const std::vector<std::uint8_t> want = cpu_mask(kB, kH, n, n, o);
          CaseTensors t = probe_case(dt, n, o);
          const std::string what = std::string(name(dt)) + " N=D=" + std::to_string(n) + " p=" + std::to_string(p) +
                                   (sm90 ? " FLATATTN_CUDA_SM90=0" : " default policy");
          for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
            t.c.options.dataflow = df;
            t.out.poison();
            const Report r = run_on_gpu(t);
            EXPECT_EQ(read_mask(t.out, n, p, false), want) << what << " forward " << r.kernel;
          }
          t.c.options.dataflow = Dataflow::flash;
          run_on_gpu(t);
          for (bool det : {false, true}) {
            t.c.options.deterministic = det;
            const Report r = run_backward_on_gpu(t);
            EXPECT_EQ(read_mask(t.dv, n, p, true), want) << what << " backward dV " << r.kernel;
          }
          t.c.options.deterministic = false;
        }
      }
    }
  }
}

TEST(CudaDropout, DeterministicBackwardIsBitwiseReproducible) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaDropout.DeterministicBackwardIsBitwiseReproducible");
  std::mt19937_64 rng(seed);
  // p = 0.9: kept dP entries are 10x dO V^T, which the fixed-point unit's row bound must cover (repro_dq.cuh).
  for (auto [sm90, p] : {std::pair{"0", 0.1f}, std::pair{static_cast<const char*>(nullptr), 0.1f},
                         std::pair{"0", 0.9f}, std::pair{static_cast<const char*>(nullptr), 0.9f}}) {
    const ScopedSm90 policy(sm90);
    Case c = small_case(DType::f16, 200, 230, 128);
    c.options = dropout_options(rng, p);
    c.options.causal = true;
    c.options.deterministic = true;
    CaseTensors t = make_case(c, rng, true);
    run_on_gpu(t);
    run_backward_on_gpu(t);
    const CaseTensors first = t;
    run_backward_on_gpu(t);
    for (auto [a, b, n] : {std::tuple{&first.dq, &t.dq, "dq"}, std::tuple{&first.dk, &t.dk, "dk"},
                           std::tuple{&first.dv, &t.dv, "dv"}})
      EXPECT_EQ(a->storage, b->storage) << n << " differs between two deterministic runs (" << (sm90 ? "sm80" : "default")
                                        << ")";
    check_backward(t, seed, p > 0.5f ? "dropout 0.9 causal, deterministic" : "dropout 0.1 causal, deterministic");
  }
}

}  // namespace
