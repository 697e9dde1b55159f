// ALiBi and attention sinks on the GPU beyond the feature table (Table/CudaFeature runs every alibi_* and
// sinks_* row on both families, forward and backward, dsinks included): sinks far above the logits (no
// overflow), the sinks' gradient bitwise reproducible (its reduction has a fixed order) and equal across
// the deterministic and default backward, and slopes or sinks on the wrong device refused with nothing written.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

TEST(CudaSinks, FarAboveTheLogitsStayFinite) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaSinks.FarAboveTheLogitsStayFinite");
  std::mt19937_64 rng(seed);
  for (double mean : {30.0, 60.0, -200.0}) {
    Case c = small_case(DType::f16, 70, 90);
    c.options.causal = true;
    c.sinks = true;
    c.sink_mean = mean;
    for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
      c.options.dataflow = df;
      CaseTensors t = make_case(c, rng);
      check_case(t, seed, ("sink mean " + std::to_string(mean)).c_str());
      EXPECT_EQ(t.out.count_nonfinite(), 0);
      EXPECT_EQ(t.lse.count_nonfinite(), 0);
    }
  }
}

TEST(CudaSinks, GradientIsReproducible) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaSinks.GradientIsReproducible");
  Case c = small_case(DType::bf16, 300, 300);
  if (!dtype_runs(c.dtype)) c.dtype = DType::f16;
  c.options.causal = true;
  c.sinks = true;
  c.alibi = 1;
  CaseTensors t = make_case(c, seed, true);
  check_backward(t, seed, "alibi + sinks");
  const HostTensor first = t.dsinks;
  for (bool det : {false, true, false}) {
    t.c.options.deterministic = det;
    t.dsinks.poison();
    run_backward_on_gpu(t);
    EXPECT_EQ(first.storage, t.dsinks.storage) << "dsinks changed between runs (deterministic " << det << ")";
  }
}

TEST(CudaAlibiSinks, HostTensorsAreRefused) {
  REQUIRE_GPU();
  Case c = small_case(DType::f16, 20, 20);
  c.alibi = 1;
  c.sinks = true;
  CaseTensors t = make_case(c, 5, true);
  for (const char* arg : {"alibi_slopes", "sinks", "dsinks"}) {
    const auto before = t.dq.storage;
    try {
      run_backward_on_gpu(t, false, [&](BackwardArgs& a) {
        if (std::string(arg) == "alibi_slopes") a.alibi_slopes = t.alibi.view();
        if (std::string(arg) == "sinks") a.sinks = t.sinks.view();
        if (std::string(arg) == "dsinks") a.dsinks = t.dsinks.view();
      });
      ADD_FAILURE() << "a host " << arg << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), arg) << e.what();
    }
    EXPECT_EQ(before, t.dq.storage) << "dq was written before the error on " << arg;
  }
}

}  // namespace
