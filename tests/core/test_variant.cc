// The variant seam's host side (src/core/variant.h): which variant serves a call, the per-call data in each
// backend's units, and the hooks' values against their closed forms on fresh random logits.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "src/check/case.h"
#include "src/core/half.h"
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
        // The backward's kept value: x and the derivative from it.
        const float k = carry_score<SoftcapScore, FloatMath>(s, soft, {});
        EXPECT_NEAR((score_of_carry<SoftcapScore, FloatMath>(k, soft)), unit * cap * t, 4e-6 * unit * cap) << "s=" << s;
        EXPECT_NEAR(SoftcapScore::dscore<FloatMath>(k, soft), 1.0 - t * t, 2e-6) << "s=" << s;
        EXPECT_GE(SoftcapScore::dscore<FloatMath>(k, soft), 0.f);
        EXPECT_NEAR(PlainScore::score<FloatMath>(s, plain, {}), unit * scale * s, 1e-6 * std::abs(unit * scale * s) + 1e-30);
        EXPECT_EQ(PlainScore::dscore<FloatMath>(x, plain), 1.f);
        EXPECT_EQ((carry_score<PlainScore, FloatMath>(s, plain, {})), PlainScore::score<FloatMath>(s, plain, {}));
        EXPECT_EQ((score_of_carry<PlainScore, FloatMath>(x, plain)), x);
      }
    }
  }
}

/// Softcap's derivative where tanh saturates (issue 20, item 6): sech^2 u = 1 - tanh^2 u from the backward's
/// kept value agrees with the fp64 closed form to a few ulp relative for every |u| up to the fp32 range of
/// e^-2|u|, where 1 - (x / c)^2 from the rounded x is 0 or off by orders of magnitude (|u| > ~5). Both
/// backends' math (FloatMath: the CUDA kernels' scalar form on the host; VecMath is in tests/cpu).
TEST(Variant, SoftcapDerivativeWithoutCancellation) {
  std::mt19937_64 rng(check::fresh_seed());
  std::uniform_real_distribution<float> uni(-45.f, 45.f);
  const float cap = 5.f, scale = 0.125f;
  const VariantData v = make_variant_data(VariantArgs{.softcap = cap}, scale, 1.f);
  int cancelled = 0;
  for (int n = 0; n < 20000; ++n) {
    const float s = uni(rng) * cap / scale;  // u = scale s / cap uniform in [-45, 45]
    const float uf = v.pre * s;  // the kernels' u (its own fp32 rounding is the input's, not the hook's)
    const double u = uf, cu = std::cosh(u), want = 1.0 / (cu * cu);
    const float k = carry_score<SoftcapScore, FloatMath>(s, v, {});
    const float got = SoftcapScore::dscore<FloatMath>(k, v);
    EXPECT_NEAR(got, want, 8e-7 * want + 1e-37) << "u=" << u;
    EXPECT_NEAR((score_of_carry<SoftcapScore, FloatMath>(k, v)), cap * std::tanh(u), 4e-7 * cap) << "u=" << u;
    // The old formula, for contrast: its error is what the kept value removes.
    const float t = SoftcapScore::score<FloatMath>(s, v, {}) / cap;
    if (std::abs((1.f - t * t) - want) > 1e-2 * want) ++cancelled;
  }
  EXPECT_GT(cancelled, 1000) << "the draws must reach the saturated range where 1 - t^2 cancels";
  // A masked element's kept value (-inf) gives x = -inf and a zero, finite derivative.
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_EQ((score_of_carry<SoftcapScore, FloatMath>(ninf, v)), ninf);
  EXPECT_EQ(SoftcapScore::dscore<FloatMath>(ninf, v), 0.f);
}

/// ALiBi (Press et al. 2022): x = unit (scale s - slope |i + Nk - Nq - j|) with the slope of (b, h), in both
/// backends' units; the lengths reach the hook only through with_lengths for a score that needs them.
TEST(Variant, AlibiMatchesClosedForm) {
  EXPECT_EQ(variant_of(VariantArgs{.alibi_slopes = reinterpret_cast<const float*>(16)}), VariantId::alibi);
  EXPECT_STREQ(variant_name(VariantId::alibi), "alibi");
  EXPECT_EQ(visit_variant(VariantId::alibi, [&]<class V>() { return V::kId; }), VariantId::alibi);
  EXPECT_FALSE(VariantOf<VariantId::alibi>::kFoldsScale);
  EXPECT_TRUE(needs_lengths<AlibiScore>);
  EXPECT_FALSE(needs_lengths<PlainScore>);
  EXPECT_FALSE(needs_lengths<SoftcapScore>);
  EXPECT_EQ(with_lengths<PlainScore>(ScoreAt{}, 5, 9).diag, 0);
  EXPECT_EQ(with_lengths<AlibiScore>(ScoreAt{}, 5, 9).diag, 4);
  std::mt19937_64 rng(check::fresh_seed());
  std::normal_distribution<float> logit(0.f, 40.f);
  const float slopes[2][3] = {{0.5f, 0.25f, 0.125f}, {0.75f, 0.0625f, 1.f / 256}};
  for (float unit : {1.f, kLog2e}) {
    const float scale = 0.125f;
    const VariantData v = make_variant_data(VariantArgs{.alibi_slopes = &slopes[0][0], .alibi_stride_b = 3}, scale, unit);
    for (int n = 0; n < 1000; ++n) {
      const int b = n % 2, h = n % 3, nq = 1 + n % 17, nk = 1 + n % 29, i = n % nq, j = n % nk;
      const float s = logit(rng);
      const ScoreAt at = with_lengths<AlibiScore>(ScoreAt{b, h, h, i, j}, nq, nk);
      const double want = unit * (double(scale) * s - double(slopes[b][h]) * std::abs(i + nk - nq - j));
      EXPECT_NEAR(AlibiScore::score<FloatMath>(s, v, at), want, 2e-6 * (std::abs(want) + 1)) << "n=" << n;
    }
    EXPECT_EQ(AlibiScore::dscore<FloatMath>(3.f, v), 1.f);
  }
}

/// The split form the CUDA kernels use (a row term per thread and tile, then each element from its offsets): the
/// same x as score() up to the rounding of the scaled distance (variant.h: |error| <= 2^-23 |head| (|dist| +
/// |di - dj|)), for both signs of the slope, with the head constant filled only through with_lengths(at, nq, nk, v)
/// and only for a score that has the form.
TEST(Variant, AlibiSplitFormMatchesScore) {
  EXPECT_TRUE(has_split<AlibiScore>);
  EXPECT_FALSE(has_split<PlainScore>);
  EXPECT_FALSE(has_split<SoftcapScore>);
  EXPECT_FALSE(has_split<BiasScore>);
  // a negative slope (allowed, not BLOOM's) takes the other form (flip)
  const float slopes[2][3] = {{0.5f, 0.25f, -0.125f}, {0.75f, 0.0625f, 1.f / 256}};
  const VariantData v =
      make_variant_data(VariantArgs{.alibi_slopes = &slopes[0][0], .alibi_stride_b = 3}, 0.125f, kLog2e);
  EXPECT_TRUE(AlibiScore::flip(with_lengths<AlibiScore>(ScoreAt{0, 2, 2, 0, 0}, 5, 9, v)));
  EXPECT_FALSE(AlibiScore::flip(with_lengths<AlibiScore>(ScoreAt{0, 1, 1, 0, 0}, 5, 9, v)));
  // the other scores keep ScoreAt (their kernels' code does not change); a split score gets SplitAt and its head
  static_assert(std::is_same_v<decltype(with_lengths<PlainScore>(ScoreAt{}, 5, 9, v)), ScoreAt>);
  static_assert(std::is_same_v<decltype(with_lengths<AlibiScore>(ScoreAt{}, 5, 9, v)), SplitAt>);
  EXPECT_EQ((with_lengths<AlibiScore>(ScoreAt{1, 2, 2, 0, 0}, 5, 9, v).head), kLog2e * slopes[1][2]);
  EXPECT_EQ((with_lengths<AlibiScore>(ScoreAt{1, 2, 2, 0, 0}, 5, 9, v).diag), 4);
  std::mt19937_64 rng(check::fresh_seed());
  std::normal_distribution<float> logit(0.f, 40.f);
  std::uniform_int_distribution<int> pos(0, 40000), off(0, 255);
  for (int n = 0; n < 20000; ++n) {
    const int b = n % 2, h = n % 3, nq = 1 + pos(rng), nk = 1 + pos(rng);
    // the element (i, j) and the row term's coordinates (i - di, j - dj), the offsets of a tile's size
    const int i = pos(rng) % nq, j = pos(rng) % nk;
    const int di = std::min(off(rng), i), dj = std::min(off(rng), j);
    const float s = logit(rng);
    const SplitAt at = with_lengths<AlibiScore>(ScoreAt{b, h, h, i, j}, nq, nk, v);
    SplitAt row = at;
    row.i -= di, row.j -= dj;
    const float rt = AlibiScore::row_term(row);
    const float got = AlibiScore::flip(row) ? AlibiScore::split<true>(s, v, row, rt, di, dj)
                                            : AlibiScore::split<false>(s, v, row, rt, di, dj);
    const float want = AlibiScore::score<FloatMath>(s, v, at);
    const double dist = std::abs(i + nk - nq - j);
    // the split's rounding of the bias, plus both forms' roundings of pre s, the bias and the sum (a few ulp)
    const double tol =
        0x1p-23 * std::abs(at.head) * (dist + di + dj) + 0x1p-22 * (std::abs(want) + std::abs(v.pre * s) + 1);
    EXPECT_NEAR(got, want, tol) << "n=" << n << " i=" << i << " j=" << j << " di=" << di << " dj=" << dj;
  }
}

TEST(Variant, KeysOfALane) {
  for (int j : {0, 7, 1000}) EXPECT_EQ(FloatMath::keys(j), static_cast<float>(j));
}

}  // namespace
TEST(Variant, BiasMatchesClosedFormAndClampsToItsExtents) {
  std::mt19937_64 rng(check::fresh_seed());
  std::normal_distribution<float> nd;
  const int nb = 2, nh = 3, nq = 5, nk = 7;
  std::vector<float> f32(nb * nh * nq * nk);
  std::vector<std::uint16_t> b16(f32.size()), h16(f32.size());
  for (std::size_t e = 0; e < f32.size(); ++e) {
    b16[e] = float_to_bf16(nd(rng));
    f32[e] = bf16_to_float(b16[e]);  // exact in every dtype below
    h16[e] = float_to_f16(f32[e]);
  }
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    VariantArgs a;
    a.bias = dt == DType::f32 ? static_cast<const void*>(f32.data())
             : dt == DType::f16 ? static_cast<const void*>(h16.data()) : static_cast<const void*>(b16.data());
    a.bias_dtype = dt;
    a.bias_sb = nh * nq * nk, a.bias_sh = nq * nk, a.bias_si = nk, a.bias_nq = nq, a.bias_nk = nk;
    EXPECT_EQ(variant_of(a), VariantId::bias);
    const float scale = 0.37f;
    const VariantData v = make_variant_data(a, scale, kLog2e);  // the CUDA units
    for (int b = 0; b < nb; ++b)
      for (int h = 0; h < nh; ++h)
        for (int i = 0; i < nq + 3; ++i)  // rows and keys past the extents read the last ones
          for (int j = 0; j < nk + 4; ++j) {
            const float s = nd(rng);
            const int ic = std::min(i, nq - 1), jc = std::min(j, nk - 1);
            const float want = kLog2e * (scale * s + f32[((b * nh + h) * nq + ic) * nk + jc]);
            const float got = BiasScore::score<FloatMath>(s, v, ScoreAt{b, h, 0, i, j});
            ASSERT_NEAR(got, want, 1e-5f * (1.f + std::abs(want))) << name(dt) << " " << b << h << i << j;
          }
    EXPECT_EQ(BiasScore::dscore<FloatMath>(3.f, v), 1.f);
  }
  VariantArgs with_softcap;
  with_softcap.softcap = 30.f;
  with_softcap.bias = f32.data();
  EXPECT_EQ(variant_of(with_softcap), VariantId::bias);  // validation refuses the pair; the bias wins here
}

}  // namespace flatattn
