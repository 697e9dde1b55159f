// fp16/bf16 conversions against the compiler's own _Float16 and a bit-exact bf16 rounding rule.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "src/core/half.h"

using namespace flatattn;

TEST(Half, F16RoundTripsEveryHalf) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_float(static_cast<std::uint16_t>(h));
    const _Float16 native = std::bit_cast<_Float16>(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(static_cast<float>(native)));
      continue;
    }
    ASSERT_EQ(f, static_cast<float>(native)) << std::hex << h;
    ASSERT_EQ(float_to_f16(f), h) << std::hex << h;
  }
}

TEST(Half, F16RoundingMatchesCompiler) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    const float f = std::bit_cast<float>(bits(rng));
    if (std::isnan(f)) continue;
    const auto want = std::bit_cast<std::uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(float_to_f16(f), want) << f;
  }
}

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(float_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_float(float_to_bf16(-std::numeric_limits<float>::infinity())),
            -std::numeric_limits<float>::infinity());
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> nd(0.f, 100.f);
  for (int i = 0; i < 100000; ++i) {
    const float f = nd(rng);
    const float r = bf16_to_float(float_to_bf16(f));
    ASSERT_LE(std::abs(r - f), std::abs(f) * (1.0f / 256)) << f;
  }
}
