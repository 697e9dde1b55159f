// The additive bias on the GPU beyond the feature table (Table/CudaFeature runs every bias_* row on both
// families, forward and backward, dbias included): every broadcast shape and bias dtype on both families,
// the dbias modes (plain stores with and without the zeroing pass, fp32 atomics, the deterministic workspace)
// against the oracle, the deterministic dbias bitwise reproducible, the staged bias tile's copy widths and
// tails, dbias's row copies from the staged dS tile (16-byte stores and reductions, their scalar fallbacks, the
// per-key row sum of Mq = 1) in every mode, and a bias or dbias on the wrong device refused with nothing written.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

const char* const kDims[] = {"bhq", "hq", "bq", "q", "bh", "b", "h", "-"};

TEST(CudaBias, EveryShapeAndDtypeBothFamilies) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaBias.EveryShapeAndDtypeBothFamilies");
  std::mt19937_64 rng(seed);
  const DType dts[] = {DType::f32, DType::f16, DType::bf16};
  int k = 0;
  for (const char* sm90 : {"0", static_cast<const char*>(nullptr)}) {
    const ScopedSm90 policy(sm90);
    for (const char* dims : kDims)
      for (bool det : {false, true}) {
        Case c = small_case(DType::bf16, 150, 170);
        if (!dtype_runs(c.dtype)) c.dtype = DType::f16;
        c.hq = 4, c.hkv = 2;
        c.bias_dims = dims;
        c.bias_dtype = dts[k++ % 3];
        c.bias_strided = k % 2 == 0;
        c.options.causal = k % 4 == 1;  // causal: the zeroing pass of a full dbias; else every element is visible
        c.options.deterministic = det;
        CaseTensors t = make_case(c, rng, true);
        check_case(t, seed, "bias forward");
        check_backward(t, seed, (std::string("bias backward, FLATATTN_CUDA_SM90=") + (sm90 ? sm90 : "default")).c_str());
      }
  }
}

TEST(CudaBias, DeterministicGradientIsBitwiseReproducible) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaBias.DeterministicGradientIsBitwiseReproducible");
  for (const char* dims : {"hq", "-", "bhq", "bh"}) {
    Case c = small_case(DType::bf16, 300, 300);
    if (!dtype_runs(c.dtype)) c.dtype = DType::f16;
    c.hq = 8, c.hkv = 2;
    c.options.causal = true;
    c.options.deterministic = true;
    c.bias_dims = dims;
    CaseTensors t = make_case(c, seed, true);
    check_backward(t, seed, "deterministic dbias");
    const HostTensor first = t.dbias;
    for (int run = 0; run < 3; ++run) {
      t.dbias.poison();
      run_backward_on_gpu(t);
      EXPECT_EQ(first.storage, t.dbias.storage) << dims << ": dbias changed between deterministic runs";
    }
  }
}

TEST(CudaBias, VarlenIndexesWithinEachSequence) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaBias.VarlenIndexesWithinEachSequence");
  std::mt19937_64 rng(seed);
  for (const char* dims : {"bhq", "q", "bh"})  // "bh": Mq = 1, one staged row per tile
    for (bool det : {false, true}) {
      Case c = small_case(DType::f16, 0, 0);
      c.varlen = true;
      c.seqlens_q = {0, 130, 7, 64};
      c.seqlens_k = {9, 140, 0, 200};
      c.batch = 4;
      c.options.window = {40, 10};
      c.options.deterministic = det;
      c.bias_dims = dims;
      CaseTensors t = make_case(c, rng, true);
      check_case(t, seed, "varlen bias forward");
      check_backward(t, seed, "varlen bias backward");
    }
}

// The staged bias tile (src/cuda/common/bias_tile.cuh) on both families, forward and backward, D = 64 and 128
// (the sm80 backward stages at D = 128, one Q/dO stage): each copy width -- 16-byte (row stride a multiple of
// 16 bytes), 16-byte with a partial last chunk (Nk not a multiple of the chunk, padded row stride), 4-byte (f32)
// and 2-byte (f16/bf16) for an odd row stride -- with Nq and Nk not multiples of any tile, full (Mq = Nq) and
// row-broadcast (Mq = 1) biases, causal and not.
TEST(CudaBias, StagedTileCopyWidthsAndTails) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaBias.StagedTileCopyWidthsAndTails");
  std::mt19937_64 rng(seed);
  struct Row {
    std::int64_t nk, pad;  // row stride Nk + pad elements
  };
  const Row rows[] = {{256, 0}, {250, 6}, {257, 0}};
  int k = 0;
  for (const char* sm90 : {"0", static_cast<const char*>(nullptr)}) {
    const ScopedSm90 policy(sm90);
    for (std::int64_t d : {64, 128})
      for (DType bdt : {DType::bf16, DType::f32})
        for (const Row& row : rows)
          for (const char* dims : {"bhq", "bh"}) {
            Case c = small_case(DType::bf16, 200, row.nk, d);
            if (!dtype_runs(c.dtype)) c.dtype = DType::f16;
            c.hq = 4, c.hkv = 2;
            c.bias_dims = dims;
            c.bias_dtype = bdt == DType::bf16 ? c.dtype : bdt;
            c.options.causal = k++ % 2 == 1;
            CaseTensors t = make_case(c, rng, true);
            // The same shape with the chosen row stride (contiguous otherwise), fresh values.
            t.bias = HostTensor::make(t.bias.dtype, t.bias.shape, {}, row.pad);
            t.bias.fill_normal(rng());
            t.dbias = HostTensor::make(t.dbias.dtype, t.dbias.shape, {}, row.pad);
            t.dbias.poison();
            const std::string what = std::string("staged bias ") + dims + " " + std::string(name(t.bias.dtype)) +
                                     " Nk=" + std::to_string(row.nk) + " stride=" + std::to_string(row.nk + row.pad) +
                                     " D=" + std::to_string(d) + " FLATATTN_CUDA_SM90=" + (sm90 ? sm90 : "default");
            check_case(t, seed, (what + " forward").c_str());
            check_backward(t, seed, (what + " backward").c_str());
          }
  }
}

// dbias by rows from the staged dS tile (src/cuda/common/dbias.cuh) on both families, D = 64 and 128: every bias
// dtype (f16 / f32 from bf16 inputs: converted from the tile), a full bias (16-byte stores), broadcast ones (sm90:
// 16-byte vector reductions; sm80: scalar ones) and Mq = 1 (rows summed per key, then one reduction), each also
// deterministic. Nk = 200: whole chunks in a partial key block; Nk = 204: 16-bit rows of 408 bytes (the scalar
// fallback) and a partial last chunk. Then Nq = 1, where even a full bias has row stride 0 (one plain store per key).
TEST(CudaBias, DbiasRowCopiesEveryModeBothFamilies) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaBias.DbiasRowCopiesEveryModeBothFamilies");
  std::mt19937_64 rng(seed);
  const DType dts[] = {DType::bf16, DType::f16, DType::f32};
  int k = 0;
  for (const char* sm90 : {"0", static_cast<const char*>(nullptr)}) {
    const ScopedSm90 policy(sm90);
    for (std::int64_t d : {64, 128})
      for (const char* dims : {"bhq", "hq", "b", "bh"})
        for (DType bdt : dts)
          for (bool det : {false, true}) {
            const std::int64_t nk = k % 2 == 0 ? 200 : 204;
            Case c = small_case(DType::bf16, 130, nk, d);
            if (!dtype_runs(c.dtype)) c.dtype = DType::f16;
            c.hq = 4, c.hkv = 2;
            c.bias_dims = dims;
            c.bias_dtype = bdt == DType::bf16 ? c.dtype : bdt;
            c.options.causal = k++ % 3 == 1;
            c.options.deterministic = det;
            CaseTensors t = make_case(c, rng, true);
            const std::string what = std::string("dbias rows ") + dims + " " + std::string(name(c.bias_dtype)) +
                                     " Nk=" + std::to_string(nk) + " D=" + std::to_string(d) +
                                     (det ? " deterministic" : "") + " FLATATTN_CUDA_SM90=" + (sm90 ? sm90 : "default");
            check_backward(t, seed, what.c_str());
          }
    for (const char* dims : {"bhq", "bh", "-"})
      for (bool det : {false, true}) {
        Case c = small_case(DType::bf16, 1, 77, 64);
        if (!dtype_runs(c.dtype)) c.dtype = DType::f16;
        c.bias_dims = dims;
        c.options.deterministic = det;
        CaseTensors t = make_case(c, rng, true);
        check_backward(t, seed, (std::string("dbias rows Nq=1 ") + dims + (det ? " deterministic" : "")).c_str());
      }
  }
}

TEST(CudaBias, HostTensorsAreRefused) {
  REQUIRE_GPU();
  Case c = small_case(DType::f16, 20, 20);
  c.bias_dims = "bhq";
  CaseTensors t = make_case(c, 5, true);
  for (const char* arg : {"bias", "dbias"}) {
    const auto before = t.dq.storage;
    try {
      run_backward_on_gpu(t, false, [&](BackwardArgs& a) {
        if (std::string(arg) == "bias") a.bias = t.bias.view();
        if (std::string(arg) == "dbias") a.dbias = t.dbias.view();
      });
      ADD_FAILURE() << "a host " << arg << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), arg) << e.what();
    }
    EXPECT_EQ(before, t.dq.storage) << "dq was written before the error on " << arg;
  }
}

}  // namespace
