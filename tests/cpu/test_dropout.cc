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
