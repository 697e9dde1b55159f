// The dropout keep function (src/core/philox.h) and flatattn::dropout_mask on the CPU: Philox-4x32 against
// Random123's known answers, the documented (key, counter, word) mapping recomputed from its definition, the kept
// fraction within binomial bounds, independence of neighbours, determinism and sensitivity to every input of
// the stream, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "flatattn/attention.h"
#include "src/check/case.h"
#include "src/core/philox.h"

namespace flatattn {
namespace {

// Known-answer vectors of Random123 (D. E. Shaw Research), file tests/kat_vectors, the "philox4x32 7" and
// "philox4x32 10" lines (github.com/DEShawResearch/random123 at 9545ff6413f258be2f04c1d319d99aaef7521150):
// counter (4 words), key (2 words), expected output (4 words).
struct Kat {
  int rounds;
  Philox4 ctr;
  std::uint32_t k0, k1;
  Philox4 want;
};
const Kat kKats[] = {
    {7, {{0, 0, 0, 0}}, 0, 0, {{0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}}},
    {7, {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
     {{0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}}},
    {7, {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
     {{0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}}},
    {10, {{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
    {10, {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, 0xffffffff, 0xffffffff,
     {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
    {10, {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
     {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
};

TEST(Philox, Random123KnownAnswers) {
  for (const Kat& k : kKats) {
    const Philox4 got = k.rounds == 7 ? philox4x32<7>(k.ctr, k.k0, k.k1) : philox4x32<10>(k.ctr, k.k0, k.k1);
    for (int w = 0; w < 4; ++w)
      EXPECT_EQ(got.x[w], k.want.x[w]) << "philox4x32-" << k.rounds << " ctr " << std::hex << k.ctr.x[0] << " word " << w;
  }
}

/// The documented mapping, recomputed from its text (not through dropout_block / dropout_word).
bool keep_by_definition(std::uint64_t seed, std::uint64_t offset, double p, int hq, int b, int h, int i, int j) {
  const auto k0 = static_cast<std::uint32_t>(seed & 0xffffffffu);
  const auto k1 = static_cast<std::uint32_t>(seed >> 32) ^ static_cast<std::uint32_t>(offset >> 32);
  const Philox4 ctr{{static_cast<std::uint32_t>((j / 64) * 4 + (j / 2) % 4), static_cast<std::uint32_t>(i),
                     static_cast<std::uint32_t>(b * hq + h), static_cast<std::uint32_t>(offset & 0xffffffffu)}};
  const Philox4 out = philox4x32<10>(ctr, k0, k1);
  const int k = ((j / 8) % 8) * 2 + j % 2;  // the byte of the 128 output bits, little-endian words
  const std::uint32_t byte = (out.x[k / 4] >> (8 * (k % 4))) & 0xffu;
  return byte >= static_cast<std::uint32_t>(std::nearbyint(p * 256.0));  // round to nearest, ties to even
}

// One call serves 16 elements of a row: keys (j & ~63) + 2 ((j >> 1) & 3) + 8 w + e read bytes 2 w + e of one
// Philox output, and the 4 calls of a 64-key group (and the next group) are distinct counters.
TEST(Dropout, OneCallServesSixteenKeysOfARow) {
  std::mt19937_64 rng(check::fresh_seed());
  const std::uint64_t seed = rng(), offset = rng();
  const DropoutStream s = dropout_stream(seed, offset, 0.3, 4);
  for (int rep = 0; rep < 20; ++rep) {
    const int i = static_cast<int>(rng() % 100000), a = static_cast<int>(rng() % 1000), q = static_cast<int>(rng() % 4);
    const int j0 = 64 * a + 2 * q;
    const Philox4 o = dropout_block(s.k0, s.k1, s.c3, s.hq, 1, 2, i, j0);
    const std::uint32_t bits = dropout_keep_bits(o, s.threshold);
    for (int w = 0; w < 8; ++w)
      for (int e = 0; e < 2; ++e) {
        const int j = j0 + 8 * w + e;
        const Philox4 oj = dropout_block(s.k0, s.k1, s.c3, s.hq, 1, 2, i, j);
        for (int x = 0; x < 4; ++x) ASSERT_EQ(oj.x[x], o.x[x]) << "key " << j << " draws another call than key " << j0;
        ASSERT_EQ(dropout_byte(o, j), dropout_byte_at(o, 2 * w + e)) << "key " << j;
        ASSERT_EQ(((bits >> (2 * w + e)) & 1u) != 0, dropout_keep(s, 1, 2, i, j)) << "keep bit of key " << j;
      }
    // the other three calls of the group and the next group's differ from this one
    for (int j : {64 * a + 2 * ((q + 1) % 4), 64 * a + 2 * ((q + 2) % 4), 64 * a + 2 * ((q + 3) % 4), 64 * (a + 1) + 2 * q}) {
      const Philox4 oj = dropout_block(s.k0, s.k1, s.c3, s.hq, 1, 2, i, j);
      EXPECT_FALSE(oj.x[0] == o.x[0] && oj.x[1] == o.x[1] && oj.x[2] == o.x[2] && oj.x[3] == o.x[3]) << "key " << j;
    }
  }
}

// dropout_keep_bits (SWAR, what the sm90 backward packs into shared memory) against the byte-by-byte rule, at every
// threshold including the ends 0 (all kept) and 256 (all dropped), on random words and on bytes at the threshold.
TEST(Dropout, KeepBitsEqualTheByteRuleAtEveryThreshold) {
  std::mt19937_64 rng(check::fresh_seed());
  for (std::uint32_t t = 0; t <= 256; ++t)
    for (int rep = 0; rep < 40; ++rep) {
      Philox4 o;
      for (std::uint32_t& x : o.x) {
        x = static_cast<std::uint32_t>(rng());
        if (rep % 4 == 0) {  // bytes at t - 1, t, t + 1 (clamped)
          x = 0;
          for (int b = 0; b < 4; ++b) {
            const std::int64_t v = std::clamp<std::int64_t>(static_cast<std::int64_t>(t) + static_cast<std::int64_t>(rng() % 3) - 1, 0, 255);
            x |= static_cast<std::uint32_t>(v) << (8 * b);
          }
        }
      }
      std::uint32_t want = 0;
      for (int k = 0; k < 16; ++k) want |= (((o.x[k / 4] >> (8 * (k % 4))) & 0xffu) >= t ? 1u : 0u) << k;
      ASSERT_EQ(dropout_keep_bits(o, t), want) << "threshold " << t << std::hex << " words " << o.x[0] << " " << o.x[1]
                                               << " " << o.x[2] << " " << o.x[3];
    }
}

// dropout_keep_msb (the CUDA forward's per-word form) against the byte rule: every threshold 0..256 and every byte
// value in every byte position, with random neighbours (the SWAR sum must not leak between bytes).
TEST(Dropout, KeepMsbEqualsTheByteRuleForEveryByteAndThreshold) {
  std::mt19937_64 rng(check::fresh_seed());
  for (std::uint32_t t = 0; t <= 256; ++t) {
    const DropoutSwar s = dropout_swar(t);
    for (std::uint32_t v = 0; v < 256; ++v)
      for (int pos = 0; pos < 4; ++pos) {
        const std::uint32_t x = (static_cast<std::uint32_t>(rng()) & ~(0xffu << (8 * pos))) | (v << (8 * pos));
        const std::uint32_t m = dropout_keep_msb(x, s);
        for (int b = 0; b < 4; ++b) {
          const bool want = ((x >> (8 * b)) & 0xffu) >= t;
          ASSERT_EQ(((m >> (8 * b + 7)) & 1u) != 0, want)
              << "threshold " << t << " byte " << b << std::hex << " word " << x << " result " << m;
        }
      }
  }
}

// p is quantized to 1/256 (FlashAttention-2's 8-bit threshold), rounded to nearest with ties to even.
TEST(Dropout, ThresholdIsPRoundedTo256ths) {
  EXPECT_EQ(dropout_threshold(0.0), 0u);
  EXPECT_EQ(dropout_threshold(0.1), 26u);   // 25.6
  EXPECT_EQ(dropout_threshold(0.17), 44u);  // 43.52
  EXPECT_EQ(dropout_threshold(0.5), 128u);
  EXPECT_EQ(dropout_threshold(0.9), 230u);  // 230.4
  EXPECT_EQ(dropout_threshold(2.5 / 256), 2u);  // a tie: to even
  EXPECT_EQ(dropout_threshold(3.5 / 256), 4u);
  EXPECT_EQ(dropout_threshold(0.999), 256u);  // 255.74: everything dropped
}

std::vector<std::uint8_t> mask_of(std::int64_t b, std::int64_t hq, std::int64_t nq, std::int64_t nk, const Options& o) {
  std::vector<std::uint8_t> m(b * hq * nq * nk, 0xAB);
  dropout_mask(m.data(), Device::cpu(), b, hq, nq, nk, o);
  return m;
}

Options drop(float p, std::uint64_t seed, std::uint64_t offset) {
  Options o;
  o.dropout_p = p;
  o.dropout_seed = seed;
  o.dropout_offset = offset;
  return o;
}

TEST(Dropout, MaskFollowsTheDocumentedMapping) {
  std::mt19937_64 rng(check::fresh_seed());
  for (int rep = 0; rep < 4; ++rep) {
    const float p = std::uniform_real_distribution<float>(0.01f, 0.95f)(rng);
    const std::uint64_t seed = rng(), offset = rng();
    const int B = 2, H = 3, NQ = 37, NK = 75;
    const std::vector<std::uint8_t> m = mask_of(B, H, NQ, NK, drop(p, seed, offset));
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < NQ; ++i)
          for (int j = 0; j < NK; ++j) {
            const std::uint8_t got = m[((b * H + h) * NQ + i) * NK + j];
            ASSERT_EQ(got, keep_by_definition(seed, offset, p, H, b, h, i, j) ? 1 : 0)
                << "p=" << p << " seed=" << seed << " offset=" << offset << " (b,h,i,j)=(" << b << "," << h << ","
                << i << "," << j << ")";
          }
  }
}

TEST(Dropout, KeptFractionWithinBinomialBounds) {
  std::mt19937_64 rng(check::fresh_seed());
  for (float p : {0.1f, 0.17f, 0.5f, 0.9f}) {
    const std::uint64_t seed = rng(), offset = rng();
    const std::int64_t B = 2, H = 3, NQ = 200, NK = 301;
    const std::vector<std::uint8_t> m = mask_of(B, H, NQ, NK, drop(p, seed, offset));
    const double n = static_cast<double>(m.size());
    const double q = 1.0 - std::nearbyint(p * 256.0) / 256.0;  // the quantized keep probability
    EXPECT_NEAR(q, 1.0 - p, 1.0 / 512.0);
    double kept = 0, pairs = 0, npairs = 0;
    for (std::int64_t r = 0; r < B * H * NQ; ++r)
      for (std::int64_t j = 0; j < NK; ++j) {
        ASSERT_LE(m[r * NK + j], 1);
        kept += m[r * NK + j];
        if (j + 1 < NK) pairs += m[r * NK + j] & m[r * NK + j + 1], npairs += 1;  // neighbours: independent
      }
    const double sd = std::sqrt(n * q * (1 - q));
    EXPECT_LE(std::abs(kept - n * q), 5 * sd) << "p=" << p << " kept " << kept << " of " << n << " seed " << seed;
    const double q2 = q * q, sd2 = std::sqrt(npairs * q2 * (1 - q2));
    EXPECT_LE(std::abs(pairs - npairs * q2), 5 * sd2) << "p=" << p << " neighbour pairs kept " << pairs;
  }
}

TEST(Dropout, DeterministicAndSensitiveToEveryInput) {
  std::mt19937_64 rng(check::fresh_seed());
  const float p = 0.5f;
  const std::uint64_t seed = rng(), offset = rng();
  const std::int64_t B = 2, H = 2, NQ = 40, NK = 70;
  const std::vector<std::uint8_t> a = mask_of(B, H, NQ, NK, drop(p, seed, offset));
  EXPECT_EQ(a, mask_of(B, H, NQ, NK, drop(p, seed, offset))) << "same (seed, offset) must give the same mask";
  // A changed input changes about half of the bits (p = 0.5: P(differ) = 1/2 per element).
  auto differ = [&](const std::vector<std::uint8_t>& b) {
    double d = 0;
    for (std::size_t x = 0; x < a.size(); ++x) d += a[x] != b[x];
    return d / static_cast<double>(a.size());
  };
  for (auto [what, o] : {std::pair{"offset + 1", drop(p, seed, offset + 1)},
                         std::pair{"offset high word", drop(p, seed, offset ^ (std::uint64_t{1} << 40))},
                         std::pair{"seed low word", drop(p, seed ^ 1, offset)},
                         std::pair{"seed high word", drop(p, seed ^ (std::uint64_t{1} << 50), offset)}}) {
    const double f = differ(mask_of(B, H, NQ, NK, o));
    EXPECT_GT(f, 0.45) << what;
    EXPECT_LT(f, 0.55) << what;
  }
  // Heads, sequences, rows and columns draw different bits: (b, h) slices and neighbouring rows differ.
  const std::int64_t slice = NQ * NK;
  for (std::int64_t s = 1; s < B * H; ++s) {
    double d = 0;
    for (std::int64_t x = 0; x < slice; ++x) d += a[x] != a[s * slice + x];
    EXPECT_GT(d / slice, 0.4) << "slice " << s << " repeats slice 0";
  }
  double d = 0;
  for (std::int64_t x = 0; x < slice - NK; ++x) d += a[x] != a[x + NK];
  EXPECT_GT(d / (slice - NK), 0.4) << "row i + 1 repeats row i";
  // p = 0: everything kept.
  for (std::uint8_t x : mask_of(1, 2, 5, 9, drop(0.f, seed, offset))) EXPECT_EQ(x, 1);
}

// Context parallelism: the mask of a sub-block at (dropout_row0, dropout_col0) is the whole sequence's mask there.
TEST(Dropout, SubBlockMaskIsTheSliceOfTheWholeSequenceMask) {
  std::mt19937_64 rng(check::fresh_seed());
  const std::int64_t B = 2, H = 3, NQ = 150, NK = 230;
  for (int rep = 0; rep < 3; ++rep) {
    const float p = std::uniform_real_distribution<float>(0.05f, 0.9f)(rng);
    const Options whole = drop(p, rng(), rng());
    const std::vector<std::uint8_t> all = mask_of(B, H, NQ, NK, whole);
    for (auto [r0, c0, nq, nk] : {std::tuple{0, 0, 10, 20}, std::tuple{37, 64, 50, 101}, std::tuple{149, 192, 1, 38},
                                  std::tuple{1, 64, 149, 166}, std::tuple{100, 0, 50, 230}, std::tuple{3, 128, 20, 102}}) {
      Options o = whole;
      o.dropout_row0 = r0, o.dropout_col0 = c0;
      const std::vector<std::uint8_t> sub = mask_of(B, H, nq, nk, o);
      for (std::int64_t bh = 0; bh < B * H; ++bh)
        for (std::int64_t i = 0; i < nq; ++i)
          for (std::int64_t j = 0; j < nk; ++j)
            ASSERT_EQ(sub[(bh * nq + i) * nk + j], all[(bh * NQ + r0 + i) * NK + c0 + j])
                << "p=" << p << " block at (" << r0 << ", " << c0 << ") (b*H+h, i, j) = (" << bh << ", " << i << ", " << j
                << ")";
    }
    // Recomputed from the documented mapping at the shifted position, far out in the sequence too.
    Options o = whole;
    o.dropout_row0 = 1000003, o.dropout_col0 = kDropoutColAlign * 40001;
    const std::vector<std::uint8_t> far = mask_of(1, 2, 7, 70, o);
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 7; ++i)
        for (int j = 0; j < 70; ++j)
          ASSERT_EQ(far[(h * 7 + i) * 70 + j], keep_by_definition(whole.dropout_seed, whole.dropout_offset, p, 2, 0, h,
                                                                  1000003 + i, kDropoutColAlign * 40001 + j) ? 1 : 0)
              << "(h, i, j) = (" << h << ", " << i << ", " << j << ")";
  }
}

TEST(Dropout, BadPositionIsRefusedAndNothingWritten) {
  for (auto [r0, c0, field] : {std::tuple{std::int64_t{0}, std::int64_t{16}, "dropout_col0"},
                               std::tuple{std::int64_t{0}, std::int64_t{33}, "dropout_col0"},
                               std::tuple{std::int64_t{0}, std::int64_t{32}, "dropout_col0"},  // the old 32-key grid
                               std::tuple{std::int64_t{0}, std::int64_t{96}, "dropout_col0"},
                               std::tuple{std::int64_t{0}, std::int64_t{-32}, "dropout_col0"},
                               std::tuple{std::int64_t{-1}, std::int64_t{0}, "dropout_row0"},
                               std::tuple{(std::int64_t{1} << 31) - 2, std::int64_t{0}, "dropout_row0"},
                               std::tuple{std::int64_t{0}, std::int64_t{1} << 31, "dropout_col0"}}) {
    Options o = drop(0.3f, 1, 2);
    o.dropout_row0 = r0, o.dropout_col0 = c0;
    std::vector<std::uint8_t> m(2 * 3 * 4, 0xAB);
    try {
      dropout_mask(m.data(), Device::cpu(), 1, 2, 3, 4, o);
      ADD_FAILURE() << "row0 " << r0 << " col0 " << c0 << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), field) << e.what();
      const std::int64_t value = std::string(field) == "dropout_row0" ? r0 : c0;
      EXPECT_NE(std::string(e.what()).find(std::to_string(value)), std::string::npos)
          << "the message names the value: " << e.what();
    }
    for (std::uint8_t x : m) EXPECT_EQ(x, 0xAB) << "written despite the error";
  }
}

TEST(Dropout, BadProbabilityIsRefusedAndNothingWritten) {
  for (float p : {-0.1f, 1.0f, 1.5f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<std::uint8_t> m(2 * 3 * 4, 0xAB);
    try {
      dropout_mask(m.data(), Device::cpu(), 1, 2, 3, 4, drop(p, 1, 2));
      ADD_FAILURE() << "dropout_p = " << p << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "dropout_p") << e.what();
    }
    for (std::uint8_t x : m) EXPECT_EQ(x, 0xAB) << "written despite the error";
  }
  std::vector<std::uint8_t> m(4);
  EXPECT_THROW(dropout_mask(m.data(), Device::cpu(), -1, 2, 1, 2, drop(0.1f, 1, 2)), Error);
  EXPECT_THROW(dropout_mask(nullptr, Device::cpu(), 1, 1, 2, 2, drop(0.1f, 1, 2)), Error);
}

}  // namespace
}  // namespace flatattn
