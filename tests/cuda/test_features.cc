// Every feature of the checks' feature table (src/check/features.h) on the GPU, per kernel family: sm80
// (FLATATTN_CUDA_SM90=0) and the default policy, which takes the sm90 kernels where they load
// (FLATATTN_CUDA_SM90 unset; skipped where no sm_90a code loads). Forward on each dataflow whose row fits
// (FLAT: Nk <= 128, every family's capacity), backward after the GPU forward; f16, and bf16 where the
// device runs it. A new entry in the table is a new pair of tests here. The suites' adversarial shapes
// (edge_cases, feature_mix, test_forward.cc, test_backward.cc) stay beside these.
#include <gtest/gtest.h>

#include <functional>
#include <ostream>
#include <random>
#include <string>
#include <tuple>

#include "src/check/features.h"
#include "src/cuda/dispatch.h"
#include "src/cuda/registry.h"
#include "tests/cuda/device_case.h"

namespace flatattn::check {
void PrintTo(const Feature& f, std::ostream* os) { *os << f.name; }
}  // namespace flatattn::check

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

enum class Family { sm80, sm90 };

const char* family_name(Family f) { return f == Family::sm80 ? "sm80" : "sm90"; }

/// gtest prints the parameter by its name (it printed the enum's bytes).
void PrintTo(Family f, std::ostream* os) { *os << family_name(f); }

/// The FLATATTN_CUDA_SM90 value that selects the family (nullptr: unset, the default policy).
const char* sm90_switch(Family f) { return f == Family::sm80 ? "0" : nullptr; }

/// Whether the sm_90a kernels load on device 0, whatever FLATATTN_CUDA_SM90 says.
bool sm90_loads() {
  const ScopedSm90 policy(nullptr);
  return cuda::path_info(0, DType::f16).sm90_flash;
}

class CudaFeature : public ::testing::TestWithParam<std::tuple<Feature, Family>> {
 protected:
  void SetUp() override {
    REQUIRE_GPU();
    // Issue 16 (block-sparse): the CUDA forward and backward take user lists, and derive on the device the lists
    // of local + global rows without them (sc.derive) and the q lists the backward passes no copy of.
    const SparseCase sc = feature_case(std::get<0>(GetParam()), DType::f16).sparse;
    sparse_ = sc.on();
    if (std::get<1>(GetParam()) == Family::sm90 && !sm90_loads())
      GTEST_SKIP() << "no sm_90 GPU, the sm90 family is not built, or its sm_90a code does not load";
  }
  bool sparse_ = false;  ///< the feature has block-sparse lists (issue 16), given or derived
  [[nodiscard]] std::string what(const char* more = "") const {
    const auto& [f, family] = GetParam();
    return std::string(f.name) + " on " + family_name(family) + more;
  }
  /// Runs body(feature, dtype, rng, seed) for f16 and (where the device runs it) bf16 with the family's
  /// FLATATTN_CUDA_SM90 set, from one printed seed.
  void for_each_dtype(const std::function<void(const Feature&, DType, std::mt19937_64&, std::uint64_t)>& body) const {
    const auto& [f, family] = GetParam();
    const ScopedSm90 policy(sm90_switch(family));
    const std::uint64_t seed = seed_for(what().c_str());
    std::mt19937_64 rng(seed);
    for (DType dt : {DType::f16, DType::bf16})
      if (dtype_runs(dt)) body(f, dt, rng, seed);
  }
};

TEST_P(CudaFeature, ForwardAgainstOracle) {
  for_each_dtype([&](const Feature& f, DType dt, std::mt19937_64& rng, std::uint64_t seed) {
    for (Dataflow df : {Dataflow::automatic, Dataflow::flash, Dataflow::flat}) {
      CaseTensors t = make_case(feature_case(f, dt), rng);
      if (df == Dataflow::flat && t.c.nk > 128) continue;
      t.c.options.dataflow = df;
      check_case(t, seed, what((std::string(", ") + std::string(name(df))).c_str()).c_str());
    }
    // Block-sparse rows on Hopper: the warp-specialized kernel's sparse walk too (forced: the planner may keep
    // these short shapes on the older sm90 kernel), for the variants it serves (issue 16, test_sparse_ws.cc).
    const Case c = feature_case(f, dt);
    const VariantId v = c.options.softcap > 0.f ? VariantId::softcap : c.alibi != 0 ? VariantId::alibi : VariantId::plain;
    const cuda::FwdInstance* ws_inst = cuda::find_fwd(cuda::Family::sm90, Dataflow::flash, dt, v, c.d);
    if (std::get<1>(GetParam()) == Family::sm90 && sparse_ && c.options.dropout_p == 0.f && !c.has_bias() &&
        ws_inst != nullptr && ws_inst->d == c.d && ws_takes_sparse(c)) {
      const ScopedWs ws("2");
      CaseTensors t = make_case(c, rng);
      const Report r = check_case(t, seed, what(", sm90 warp-specialized").c_str());
      EXPECT_NE(r.kernel.find(ws_sparse_suffix(c.d, "2")), std::string::npos) << what() << ": ran " << r.kernel;
    }
  });
}

TEST_P(CudaFeature, BackwardAgainstOracle) {
  for_each_dtype([&](const Feature& f, DType dt, std::mt19937_64& rng, std::uint64_t seed) {
    Case c = feature_case(f, dt);
    // Given lists: the caller's transposed q lists too (the device transpose is CudaSparseDerive's).
    if (sparse_ && !c.sparse.derive) c.sparse.give_q = true;
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    check_backward(t, seed, what().c_str());
  });
}

INSTANTIATE_TEST_SUITE_P(Table, CudaFeature,
                         ::testing::Combine(::testing::ValuesIn(features()),
                                            ::testing::Values(Family::sm80, Family::sm90)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  family_name(std::get<1>(info.param));
                         });

}  // namespace
