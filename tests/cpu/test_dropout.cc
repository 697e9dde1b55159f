// Dropout on the CPU engine beyond the feature table's oracle checks (src/check/features.cc rows dropout*):
// the mask read back from the outputs equals dropout_mask() bit for bit for every dataflow and tile plan,
// forward (O) and backward (dV); determinism; a changed offset changes the result; bad dropout_p is refused
// with nothing written.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "src/core/validate.h"
#include "tests/cpu/cpu_check.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

constexpr std::int64_t kB = 2, kH = 3, kN = 48;  // Nq = Nk = D = kN

Options dropout_options(Seeded& s, float p) {
  Options o;
  o.dropout_p = p;
  o.dropout_seed = s.rng();
  o.dropout_offset = s.rng();
  o.return_lse = true;
  return o;
}

/// q = k = 0 (S = 0: P = 1 / Nk exactly), v = identity (D = Nk), dout = identity (Nq = D): then
/// O[b, i, h, j] = Z_ij / ((1 - p) Nk) and dV[b, j, h, i] = Z_ij / ((1 - p) Nk), so both show the mask.
CaseTensors probe_case(const Options& o) {
  Case c;
  c.dtype = DType::f32, c.batch = kB, c.nq = kN, c.nk = kN, c.hq = kH, c.hkv = kH, c.d = kN;
  c.options = o;
  CaseTensors t = make_case(c, 1, true);
  for (std::int64_t x = 0; x < t.q.numel(); ++x) t.q.set(x, 0.0), t.k.set(x, 0.0);
  for (std::int64_t x = 0; x < t.v.numel(); ++x) {
    const std::int64_t d = x % kN, n = (x / (kN * kH)) % kN;
    t.v.set(x, n == d ? 1.0 : 0.0);
    t.dout.set(x, n == d ? 1.0 : 0.0);
  }
  return t;
}

/// The mask as read from a tensor (B, N, H, N) of values Z / ((1 - p) N): element (b, row, h, col) -> mask
/// index (b, h, i, j) with (i, j) = (row, col) for O and (col, row) for dV. Anything but 0 or the kept value fails.
std::vector<std::uint8_t> read_mask(const HostTensor& x, float p, bool transposed) {
  std::vector<std::uint8_t> m(kB * kH * kN * kN, 2);
  const double kept = 1.0 / ((1.0 - p) * kN);
  for (std::int64_t b = 0; b < kB; ++b)
    for (std::int64_t r = 0; r < kN; ++r)
      for (std::int64_t h = 0; h < kH; ++h)
        for (std::int64_t c = 0; c < kN; ++c) {
          const double v = x.at(((b * kN + r) * kH + h) * kN + c);
          const std::int64_t i = transposed ? c : r, j = transposed ? r : c;
          m[((b * kH + h) * kN + i) * kN + j] = v == 0.0 ? 0 : std::abs(v - kept) <= 1e-6 * kept ? 1 : 3;
        }
  return m;
}

TEST(CpuDropout, OutputsCarryTheMaskOfDropoutMask) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (float p : {0.17f, 0.5f}) {
    const Options o = dropout_options(s, p);
    std::vector<std::uint8_t> want(kB * kH * kN * kN);
    dropout_mask(want.data(), Device::cpu(), kB, kH, kN, kN, o);
    CaseTensors t = probe_case(o);
    const std::vector<cpu::ForwardPlan> plans = {
        {Dataflow::flash, 12, 32}, {Dataflow::flash, 24, 64}, {Dataflow::flat, 12, 0}, {Dataflow::flat, 36, 0}};
    for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
      Options od = o;
      od.dataflow = df;
      run_forward(t, od);
      EXPECT_EQ(read_mask(t.out, p, false), want) << name(df) << " p=" << p;
    }
    for (const cpu::ForwardPlan& plan : plans) {
      const Report r = run_forward(t, o, plan);
      EXPECT_EQ(read_mask(t.out, p, false), want) << r.kernel << " p=" << p;
    }
    run_forward(t, o);
    run_backward(t, o);
    EXPECT_EQ(read_mask(t.dv, p, true), want) << "backward dV, p=" << p;
    for (const cpu::BackwardPlan& plan : {cpu::BackwardPlan{12, 32, 96}, cpu::BackwardPlan{24, 64, 96}}) {
      run_backward(t, o, plan);
      EXPECT_EQ(read_mask(t.dv, p, true), want) << "backward dV with a small plan, p=" << p;
    }
  }
}

TEST(CpuDropout, DeterministicAndOffsetSensitive) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c;
  c.dtype = DType::bf16, c.batch = 2, c.nq = 70, c.nk = 90, c.hq = 4, c.hkv = 2, c.d = 64;
  c.options = dropout_options(s, 0.1f);
  c.options.causal = true;
  CaseTensors t = make_case(c, s.rng, true);
  run_forward(t, c.options);
  run_backward(t, c.options);
  const CaseTensors first = t;
  run_forward(t, c.options);
  run_backward(t, c.options);
  for (auto [a, b, n] : {std::tuple{&first.out, &t.out, "out"}, std::tuple{&first.lse, &t.lse, "lse"},
                         std::tuple{&first.dq, &t.dq, "dq"}, std::tuple{&first.dk, &t.dk, "dk"},
                         std::tuple{&first.dv, &t.dv, "dv"}})
    EXPECT_EQ(a->storage, b->storage) << n << " differs between two runs with the same (seed, offset)";
  Options o2 = c.options;
  o2.dropout_offset += 1;
  run_forward(t, o2);
  EXPECT_NE(first.out.storage, t.out.storage) << "another offset gave the same output";
  EXPECT_EQ(first.lse.storage, t.lse.storage) << "the LSE is that of the undropped P: independent of the mask";
}

TEST(CpuDropout, BadProbabilityIsRefusedAndNothingWritten) {
  Seeded s;
  Case c;
  c.dtype = DType::f32, c.nq = 20, c.nk = 20, c.hq = 2, c.hkv = 2, c.d = 32;
  CaseTensors t = make_case(c, s.rng, true);
  for (float p : {-0.01f, 1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN()}) {
    Options o;
    o.dropout_p = p;
    t.out.poison();
    try {
      flatattn::forward(t.forward_args(), o);
      ADD_FAILURE() << "forward accepted dropout_p = " << p;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "dropout_p") << e.what();
    }
    EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << "out written despite the error";
    t.dq.poison();
    EXPECT_THROW(flatattn::backward(t.backward_args(), o), Error);
    EXPECT_EQ(t.dq.count_nonfinite(), t.dq.numel()) << "dq written despite the error";
  }
}

}  // namespace
