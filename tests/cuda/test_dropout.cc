// Dropout on the GPU beyond the feature table (tests/cuda/test_features.cc runs the dropout* rows against the
// fp64 oracle on every family): the CUDA dropout_mask() equals the CPU's bit for bit; every kernel family's
// forward (Flash and FLAT) and backward apply exactly that mask, read back from O and dV of a probe case; the
// deterministic backward is bitwise reproducible with dropout.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "src/check/dropout_probe.h"
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

// Context parallelism: the CUDA mask of a block at (dropout_row0, dropout_col0) equals the CPU's, and the CPU's
// is the whole sequence's there (tests/core/test_dropout.cc).
TEST(CudaDropout, SubBlockMaskEqualsCpuBitwise) {
  REQUIRE_GPU();
  std::mt19937_64 rng(seed_for("CudaDropout.SubBlockMaskEqualsCpuBitwise"));
  // dropout_col0 on the 64-key grid of the stream (kDropoutColAlign); rows anywhere.
  for (auto [r0, c0, nq, nk] : {std::tuple{1, 64, 97, 130}, std::tuple{4096, 8192, 64, 33},
                                std::tuple{1000003, 64 * 40001, 5, 1025}}) {
    Options o = dropout_options(rng, 0.3f);
    o.dropout_row0 = r0, o.dropout_col0 = c0;
    const std::vector<std::uint8_t> want = cpu_mask(2, 3, nq, nk, o);
    std::uint8_t* d = nullptr;
    ASSERT_EQ(cudaMalloc(&d, want.size()), cudaSuccess);
    ASSERT_EQ(cudaMemset(d, 0xAB, want.size()), cudaSuccess);
    dropout_mask(d, Device::cuda(0), 2, 3, nq, nk, o);
    std::vector<std::uint8_t> got(want.size());
    ASSERT_EQ(cudaMemcpy(got.data(), d, got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(d);
    EXPECT_EQ(got, want) << "block at (" << r0 << ", " << c0 << ") Nq" << nq << " Nk" << nk;
  }
}

constexpr std::int64_t kB = 2, kH = 2;

/// The probe case (src/check/dropout_probe.h), and its mask read back within 2 % (the dtype's rounding of P and
/// of 1 / (1 - p)).
CaseTensors probe_case(DType dt, std::int64_t n, const Options& o) { return dropout_probe_case(dt, kB, kH, n, o); }

std::vector<std::uint8_t> read_mask(const HostTensor& x, std::int64_t n, float p, bool transposed) {
  return read_dropout_mask(x, kB, kH, n, p, transposed, 0.02);
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

// The kernels of every family apply the whole sequence's mask at the block's position (dropout_row0/col0).
TEST(CudaDropout, EveryFamilyAppliesTheSubBlockMask) {
  REQUIRE_GPU();
  std::mt19937_64 rng(seed_for("CudaDropout.EveryFamilyAppliesTheSubBlockMask"));
  for (const char* sm90 : {"0", static_cast<const char*>(nullptr)}) {
    const ScopedSm90 policy(sm90);
    for (DType dt : {DType::f16, DType::bf16}) {
      if (!dtype_runs(dt)) continue;
      const std::int64_t n = 128;
      Options o = dropout_options(rng, 0.3f);
      o.dropout_row0 = 777, o.dropout_col0 = 4096 + 64;
      const std::vector<std::uint8_t> want = cpu_mask(kB, kH, n, n, o);
      CaseTensors t = probe_case(dt, n, o);
      const std::string what = std::string(name(dt)) + (sm90 ? " FLATATTN_CUDA_SM90=0" : " default policy");
      for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
        t.c.options.dataflow = df;
        t.out.poison();
        const Report r = run_on_gpu(t);
        EXPECT_EQ(read_mask(t.out, n, 0.3f, false), want) << what << " forward " << r.kernel;
      }
      t.c.options.dataflow = Dataflow::flash;
      run_on_gpu(t);
      for (bool det : {false, true}) {
        t.c.options.deterministic = det;
        const Report r = run_backward_on_gpu(t);
        EXPECT_EQ(read_mask(t.dv, n, 0.3f, true), want) << what << " backward dV " << r.kernel;
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
