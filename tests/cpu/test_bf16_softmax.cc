// The bf16 forward's online-softmax step (src/cpu/amx/softmax.cc, bf16_softmax_step) against an fp64 reading of
// its contract (src/cpu/amx/amx.h), on the cases its 16-row groups must get right: a row count that is not a
// multiple of 16 (the last group partly empty), leading dims wider than the block, rows fully or partly masked,
// and the three states a row can arrive in (fresh: m = -inf, l = 0; a max that holds: no rescale; a max that
// grows: O and l rescaled by e^(m_old - m_new)). Poisoned padding must stay untouched, and a second run must
// give the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "src/core/half.h"
#include "src/cpu/amx/amx.h"

using namespace flatattn;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct State {
  std::vector<float> s, m, l, o;
  std::vector<std::uint16_t> p;
};

TEST(CpuBf16Softmax, StepMatchesTheContract) {
  if (!cpu::avx512bf16_available()) GTEST_SKIP() << "no AVX512-BF16 here (or not built): the step cannot run";
  const std::int64_t rows = 37, ncols = 96, lds = 128, ldp = 112, dp = 32, ldo = 48;
  const float scale = 0.3f;
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 4.f);
  State in;
  in.s.assign(rows * lds, std::nanf(""));  // columns >= ncols are never read: NaN there would show
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < ncols; ++j) in.s[i * lds + j] = nd(rng);
  for (std::int64_t j = 0; j < ncols; ++j) in.s[3 * lds + j] = -kInf;                  // fully masked
  for (std::int64_t j = ncols / 2; j < ncols; ++j) in.s[20 * lds + j] = -kInf;         // half masked
  for (std::int64_t j = 1; j < ncols; ++j) in.s[35 * lds + j] = -kInf;                 // one key left
  in.m.assign(rows + 5, 7.f);  // entries >= rows: poison, must survive
  in.l.assign(rows + 5, 7.f);
  in.o.assign((rows + 1) * ldo, 5.f);
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t n = 0; n < dp; ++n) in.o[i * ldo + n] = nd(rng);
    if (i % 3 == 0) in.m[i] = -kInf, in.l[i] = 0.f;  // fresh row (O is then 0 in the engine; here not needed)
    if (i % 3 == 1) in.m[i] = 100.f, in.l[i] = 2.5f;  // the max holds
    if (i % 3 == 2) in.m[i] = -9.f, in.l[i] = 1.75f;  // the max grows
  }
  in.p.assign(rows * ldp + 16, 0xFFFFu);

  State out = in;
  cpu::bf16_softmax_step(out.s.data(), rows, ncols, lds, scale, out.m.data(), out.l.data(), out.o.data(), ldo, dp,
                         out.p.data(), ldp);

  for (std::int64_t i = 0; i < rows; ++i) {
    double mx = -INFINITY;
    for (std::int64_t j = 0; j < ncols; ++j) mx = std::max(mx, static_cast<double>(in.s[i * lds + j]));
    const double m_old = in.m[i], m_new = std::max(m_old, scale * mx);
    EXPECT_EQ(out.m[i], static_cast<float>(m_new)) << "row " << i;
    const double shift = std::isinf(m_new) ? 0.0 : m_new;
    double sum = 0.0;
    for (std::int64_t j = 0; j < ncols; ++j) {
      const double e = std::exp(scale * static_cast<double>(in.s[i * lds + j]) - shift);
      sum += e;
      const double got = bf16_to_float(out.p[i * ldp + j]);
      // bf16 of an fp32 value within 2.7e-6 of e (src/cpu/exp2.h kExp2Deg4): within one bf16 half-ulp of e, plus
      // that slack.
      EXPECT_LE(std::abs(got - e), std::ldexp(e, -8) + 4e-6 * e + 1e-30) << "row " << i << " key " << j;
      if (e == 0.0) EXPECT_EQ(out.p[i * ldp + j], 0u) << "masked key " << j << " of row " << i << " gives P != 0";
    }
    for (std::int64_t j = ncols; j < ldp; ++j) EXPECT_EQ(out.p[i * ldp + j], 0xFFFFu) << "P padding written";
    const bool rescale = in.l[i] != 0.f && m_new != m_old;
    const double alpha = rescale ? std::exp(m_old - m_new) : 1.0;
    const double l_ref = in.l[i] * alpha + sum;
    // The sum of fp32 exponentials each within 2.7e-6 relative (kExp2Deg4), plus the fp32 sums' rounding.
    EXPECT_NEAR(out.l[i], l_ref, 4e-6 * std::abs(l_ref) + 1e-30) << "row " << i;
    for (std::int64_t n = 0; n < dp; ++n) {
      const double o_ref = in.o[i * ldo + n] * alpha;
      EXPECT_NEAR(out.o[i * ldo + n], o_ref, 1e-6 * std::abs(o_ref) + 1e-30) << "row " << i << " col " << n;
    }
    for (std::int64_t n = dp; n < ldo; ++n) EXPECT_EQ(out.o[i * ldo + n], in.o[i * ldo + n]) << "O padding written";
  }
  // The states the cases were built to reach, so the test cannot pass by missing them.
  EXPECT_EQ(out.m[3], -kInf);
  EXPECT_EQ(out.l[3], 0.f);
  EXPECT_GT(out.m[2], in.m[2]);   // grew
  EXPECT_EQ(out.m[1], in.m[1]);   // held
  for (std::int64_t i = rows; i < rows + 5; ++i) EXPECT_EQ(out.m[i], 7.f) << "m beyond rows written";
  for (std::int64_t i = rows; i < rows + 5; ++i) EXPECT_EQ(out.l[i], 7.f) << "l beyond rows written";
  for (std::int64_t n = 0; n < ldo; ++n) EXPECT_EQ(out.o[rows * ldo + n], 5.f) << "O beyond rows written";

  State again = in;  // determinism: the same bits
  cpu::bf16_softmax_step(again.s.data(), rows, ncols, lds, scale, again.m.data(), again.l.data(), again.o.data(), ldo,
                         dp, again.p.data(), ldp);
  EXPECT_EQ(std::memcmp(again.p.data(), out.p.data(), out.p.size() * 2), 0);
  EXPECT_EQ(std::memcmp(again.l.data(), out.l.data(), out.l.size() * 4), 0);
  EXPECT_EQ(std::memcmp(again.o.data(), out.o.data(), out.o.size() * 4), 0);
}

}  // namespace
