// The variant seam's host side (src/core/variant.h): which variant serves a call, the per-call data in each
// backend's units, and the hooks' values against their closed forms on fresh random logits.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "src/check/case.h"
#include "src/core/variant.h"

namespace flatattn {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

TEST(Variant, IdNamesAndSelection) {
  EXPECT_EQ(variant_of(VariantArgs{}), VariantId::plain);
  EXPECT_EQ(variant_of(VariantArgs{.softcap = 30.f}), VariantId::softcap);
  EXPECT_STREQ(variant_name(VariantId::plain), "plain");
  EXPECT_STREQ(variant_name(VariantId::softcap), "softcap");
  // visit_variant reaches the variant whose id it was given.
  for (VariantId id : {VariantId::plain, VariantId::softcap})
    EXPECT_EQ(visit_variant(id, [&]<class V>() { return V::kId; }), id);
  EXPECT_TRUE(VariantOf<VariantId::plain>::kFoldsScale);
  EXPECT_FALSE(VariantOf<VariantId::softcap>::kFoldsScale);
  EXPECT_FALSE(VariantOf<VariantId::softcap>::Prob::kActive);
}

/// Each score hook, in both backends' units, against its closed form: x = unit * c * tanh(scale * s / c) (softcap)
/// or unit * scale * s (plain, where the backend does not fold the scale), and dx/d(scale s) / unit.
TEST(Variant, ScoresMatchClosedForms) {
  std::mt19937_64 rng(check::fresh_seed());
  std::normal_distribution<float> logit(0.f, 40.f);
  for (float unit : {1.f, kLog2e}) {
    for (float scale : {0.125f, -0.3f}) {
      const float cap = 20.f;
      const VariantData soft = make_variant_data(VariantArgs{.softcap = cap}, scale, unit);
      const VariantData plain = make_variant_data(VariantArgs{}, scale, unit);
      for (int n = 0; n < 1000; ++n) {
        const float s = logit(rng);
        const double t = std::tanh(static_cast<double>(scale) * s / cap);
        const float x = SoftcapScore::score<FloatMath>(s, soft, {});
        EXPECT_NEAR(x, unit * cap * t, 4e-6 * unit * cap) << "s=" << s << " scale=" << scale << " unit=" << unit;
        EXPECT_NEAR(SoftcapScore::dscore<FloatMath>(x, soft), 1.0 - t * t, 2e-6) << "s=" << s;
        EXPECT_GE(SoftcapScore::dscore<FloatMath>(x, soft), 0.f);
        EXPECT_NEAR(PlainScore::score<FloatMath>(s, plain, {}), unit * scale * s, 1e-6 * std::abs(unit * scale * s) + 1e-30);
        EXPECT_EQ(PlainScore::dscore<FloatMath>(x, plain), 1.f);
      }
    }
  }
}

TEST(Variant, KeysOfALane) {
  for (int j : {0, 7, 1000}) EXPECT_EQ(FloatMath::keys(j), static_cast<float>(j));
}

}  // namespace
}  // namespace flatattn
