// Dropout on the CPU engine beyond the feature table's oracle checks (src/check/features.cc rows dropout*):
// the mask read back from the outputs equals dropout_mask() bit for bit for every dataflow and tile plan,
// forward (O) and backward (dV); determinism; a changed offset changes the result; bad dropout_p is refused
// with nothing written.
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "src/check/dropout_probe.h"
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

/// The probe case (src/check/dropout_probe.h) in f32, and its mask read back exactly.
CaseTensors probe_case(const Options& o) { return dropout_probe_case(DType::f32, kB, kH, kN, o); }

std::vector<std::uint8_t> read_mask(const HostTensor& x, float p, bool transposed) {
  return read_dropout_mask(x, kB, kH, kN, p, transposed, 1e-6);
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

/// The (B, Hq, nq, nk) block at (r0, c0) of a whole mask of (B, Hq, NQ, NK).
std::vector<std::uint8_t> slice(const std::vector<std::uint8_t>& all, std::int64_t NQ, std::int64_t NK, std::int64_t r0,
                                std::int64_t c0, std::int64_t nq, std::int64_t nk) {
  std::vector<std::uint8_t> s;
  for (std::int64_t bh = 0; bh < kB * kH; ++bh)
    for (std::int64_t i = 0; i < nq; ++i)
      for (std::int64_t j = 0; j < nk; ++j) s.push_back(all[(bh * NQ + r0 + i) * NK + c0 + j]);
  return s;
}

// Context parallelism (Options::dropout_row0/col0): a call on a block of a longer sequence applies that sequence's
// mask at the block's position, in the forward (both dataflows, small tile plans) and the backward (dV).
TEST(CpuDropout, SubBlockCallsApplyTheWholeSequenceMask) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (auto [r0, c0] : {std::pair{std::int64_t{13}, std::int64_t{64}}, std::pair{std::int64_t{96}, std::int64_t{0}},
                        std::pair{std::int64_t{1001}, std::int64_t{64 * 41}}}) {
    const Options o = [&] { Options x = dropout_options(s, 0.3f); x.dropout_row0 = r0, x.dropout_col0 = c0; return x; }();
    Options whole = o;
    whole.dropout_row0 = whole.dropout_col0 = 0;
    const std::int64_t NQ = r0 + kN, NK = c0 + kN;
    std::vector<std::uint8_t> all(kB * kH * NQ * NK);
    dropout_mask(all.data(), Device::cpu(), kB, kH, NQ, NK, whole);
    const std::vector<std::uint8_t> want = slice(all, NQ, NK, r0, c0, kN, kN);
    CaseTensors t = probe_case(o);
    for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
      Options od = o;
      od.dataflow = df;
      run_forward(t, od);
      EXPECT_EQ(read_mask(t.out, 0.3f, false), want) << name(df) << " at (" << r0 << ", " << c0 << ")";
    }
    const Report r = run_forward(t, o, cpu::ForwardPlan{Dataflow::flash, 12, 32});
    EXPECT_EQ(read_mask(t.out, 0.3f, false), want) << r.kernel << " at (" << r0 << ", " << c0 << ")";
    run_forward(t, o);
    run_backward(t, o);
    EXPECT_EQ(read_mask(t.dv, 0.3f, true), want) << "backward dV at (" << r0 << ", " << c0 << ")";
    run_backward(t, o, cpu::BackwardPlan{12, 32, 96});
    EXPECT_EQ(read_mask(t.dv, 0.3f, true), want) << "backward dV, small plan, at (" << r0 << ", " << c0 << ")";
  }
}

TEST(CpuDropout, PositionNotOnA32KeyGroupIsRefusedAndNothingWritten) {
  Seeded s;
  Case c;
  c.dtype = DType::f32, c.nq = 20, c.nk = 20, c.hq = 2, c.hkv = 2, c.d = 32;
  CaseTensors t = make_case(c, s.rng, true);
  for (auto [r0, c0, field] : {std::tuple{std::int64_t{0}, std::int64_t{48}, "dropout_col0"},
                               std::tuple{std::int64_t{0}, std::int64_t{32}, "dropout_col0"},
                               std::tuple{std::int64_t{5}, std::int64_t{-32}, "dropout_col0"},
                               std::tuple{std::int64_t{-3}, std::int64_t{0}, "dropout_row0"}}) {
    Options o;
    o.dropout_p = 0.2f;
    o.dropout_row0 = r0, o.dropout_col0 = c0;
    t.out.poison();
    try {
      flatattn::forward(t.forward_args(), o);
      ADD_FAILURE() << "forward accepted dropout_row0 " << r0 << ", dropout_col0 " << c0;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), field) << e.what();
    }
    EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << "out written despite the error";
    t.dq.poison();
    EXPECT_THROW(flatattn::backward(t.backward_args(), o), Error);
    EXPECT_EQ(t.dq.count_nonfinite(), t.dq.numel()) << "dq written despite the error";
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
