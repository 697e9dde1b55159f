// The bf16 product path of the forward and the backward (src/cpu/amx/amx.h): FLATATTN_CPU_MATMUL selects AMX,
// AVX512-BF16 or fp32, the Report's kernel name says which ran, and every path meets the oracle's rule on bf16
// cases (head dims that pad to the AMX tiles, odd lengths, masks, GQA, features). The whole forward and backward
// suites also run under each forced path as their own ctest entries (tests/cpu/CMakeLists.txt:
// cpu_forward_matmul_*, cpu_backward_matmul_*).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "flatattn/error.h"
#include "src/check/features.h"
#include "src/core/half.h"
#include "src/cpu/amx/amx.h"
#include "src/cpu/gemm.h"
#include "src/cpu/policy.h"
#include "tests/cpu/cpu_check.h"
#include "tests/cpu/matmul_env.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

bool ends_with_amx(const std::string& k) { return ends_with(k, "_amx"); }

/// The Report suffix a forced path must produce ("" for fp32).
std::string suffix_of(const std::string& path) { return path == "fp32" ? "" : "_" + path; }

/// When the ctest entry forces AMX on a machine without it, every test here would only see the Error.
class ForcedAmxNeedsAmx : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* v = std::getenv("FLATATTN_CPU_MATMUL");
    if (v != nullptr && std::string(v) == "amx" && !cpu::amx_available())
      GTEST_SKIP() << "FLATATTN_CPU_MATMUL=amx but AMX unavailable: skipping";
    if (v != nullptr && std::string(v) == "avx512bf16" && !cpu::avx512bf16_available())
      GTEST_SKIP() << "FLATATTN_CPU_MATMUL=avx512bf16 but AVX512-BF16 unavailable: skipping";
  }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ForcedAmxNeedsAmx);

/// The path forward_matmul picks for a call of dtype dt (the default Options: fp32_matmul exact).
cpu::MatmulPath path_of(DType dt) {
  Problem p;
  p.dtype = dt;
  return cpu::forward_matmul(p);
}

std::vector<const char*> paths() {
  std::vector<const char*> v = {"fp32"};
  if (cpu::amx_available()) v.push_back("amx");
  if (cpu::avx512bf16_available()) v.push_back("avx512bf16");
  return v;
}

TEST(CpuMatmul, BothPathsMatchTheOracleOnBf16) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  struct Shape {
    std::int64_t b, nq, nk, hq, hkv, d;
    bool causal;
  };
  const std::vector<Shape> shapes = {{1, 1, 1, 1, 1, 16, false},   {2, 37, 53, 4, 2, 59, true},
                                     {1, 130, 300, 2, 1, 128, true}, {2, 200, 200, 3, 3, 64, false},
                                     {1, 17, 250, 2, 2, 48, true},   {1, 64, 33, 2, 2, 256, false}};
  for (const Shape& sh : shapes) {
    Case c;
    c.dtype = DType::bf16;
    c.batch = sh.b, c.nq = sh.nq, c.nk = sh.nk, c.hq = sh.hq, c.hkv = sh.hkv, c.d = sh.d;
    c.options.causal = sh.causal;
    c.options.return_lse = true;
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng);
    const ForwardOracle o = forward_yardstick(t);
    for (const char* path : paths()) {
      ScopedMatmul m(path);
      for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
        Options opt = c.options;
        opt.dataflow = df;
        const Report r = run_forward(t, opt);
        const std::string want = suffix_of(path);
        EXPECT_EQ(ends_with_amx(r.kernel), std::string(path) == "amx") << r.kernel;
        if (!want.empty()) EXPECT_TRUE(ends_with(r.kernel, want)) << r.kernel << " under " << path;
        expect_forward_ok(t, o, r.kernel);
      }
      for (const cpu::ForwardPlan& plan : {cpu::ForwardPlan{Dataflow::flash, 12, 32}, cpu::ForwardPlan{Dataflow::flat, 36, 0}}) {
        const Report r = run_forward(t, c.options, plan);
        expect_forward_ok(t, o, r.kernel);
      }
    }
  }
}

// Flash's key block follows the path (kForwardPolicy's last column, src/cpu/policy.h): AVX512-BF16 takes
// dpbf16_block_n, AMX and fp32 flash_block_n; with more keys than one block (ragged last block), causal and not,
// the result meets the rule on each.
TEST(CpuMatmul, FlashKeyBlockFollowsThePath) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const bool causal : {false, true}) {
    Case c;
    c.dtype = DType::bf16;
    c.batch = 1, c.nq = 130, c.nk = 2500, c.hq = 2, c.hkv = 1, c.d = 64;
    c.options.causal = causal;
    c.options.return_lse = true;
    c.options.dataflow = Dataflow::flash;
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng);
    const ForwardOracle o = forward_yardstick(t);
    for (const char* path : paths()) {
      ScopedMatmul m(path);
      const Report r = run_forward(t, c.options);
      const cpu::ForwardPolicy& row = cpu::forward_policy(c.d);
      EXPECT_EQ(r.block_n, std::string(path) == "avx512bf16" ? row.dpbf16_block_n : row.flash_block_n)
          << r.kernel << " under " << path;
      expect_forward_ok(t, o, r.kernel);
    }
  }
}

// Every feature row of the table (masks, softcap, ALiBi, sinks, dropout, varlen ...) on the AMX path.
TEST(CpuMatmul, FeatureTableOnAmx) {
  if (!cpu::amx_available()) GTEST_SKIP() << "no AMX-BF16 here";
  ScopedMatmul m("amx");
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const Feature& f : features()) {
    const Case c = feature_case(f, DType::bf16);
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng);
    const ForwardOracle o = forward_yardstick(t);
    const Report r = run_forward(t, c.options);
    EXPECT_TRUE(ends_with_amx(r.kernel)) << r.kernel;
    expect_forward_ok(t, o, r.kernel);
  }
}

// Every feature row of the table on the AVX512-BF16 path (the path for CPUs without AMX).
TEST(CpuMatmul, FeatureTableOnAvx512Bf16) {
  if (!cpu::avx512bf16_available()) GTEST_SKIP() << "no AVX512-BF16 here (or not built)";
  ScopedMatmul m("avx512bf16");
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const Feature& f : features()) {
    const Case c = feature_case(f, DType::bf16);
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng);
    const ForwardOracle o = forward_yardstick(t);
    const Report r = run_forward(t, c.options);
    EXPECT_TRUE(ends_with(r.kernel, "_avx512bf16")) << r.kernel;
    expect_forward_ok(t, o, r.kernel);
  }
}

// bf16_transpose (the P^T / dS^T operands of the bf16 backward): every element lands transposed and rounded to
// nearest even, whatever the leading dims; ties, halfway cases and the sign of zero included.
TEST(CpuMatmul, Bf16TransposeIsExact) {
  if (!cpu::avx512bf16_available()) GTEST_SKIP() << "no AVX512-BF16 here (or not built)";
  Seeded s;
  SCOPED_TRACE(s.trace());
  std::normal_distribution<float> nd(0.f, 3.f);
  const std::int64_t rows = 64, ncols = 48, lds = 53, ldt = 70;
  std::vector<float> src(rows * lds);
  for (float& x : src) x = nd(s.rng);
  src[0] = 1.f + 1.f / 256;  // halfway between two bf16: rounds to the even one (1.0)
  src[1] = 1.f + 3.f / 256;  // halfway: rounds up to the even one
  src[2] = -0.f;
  std::vector<std::uint16_t> out(ncols * ldt, 0xdead);
  cpu::bf16_transpose(src.data(), rows, ncols, lds, out.data(), ldt);
  auto bf16_rne = [](float x) {
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    return static_cast<std::uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
  };
  EXPECT_EQ(out[0], 0x3f80);
  EXPECT_EQ(out[ldt], 0x3f82);
  EXPECT_EQ(out[2 * ldt], 0x8000);
  int bad = 0;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < ncols; ++j)
      if (out[j * ldt + i] != bf16_rne(src[i * lds + j]) && ++bad <= 5)
        ADD_FAILURE() << "row " << i << " col " << j << ": " << out[j * ldt + i] << " vs " << bf16_rne(src[i * lds + j]);
  for (std::int64_t j = 0; j < ncols; ++j)  // nothing written beyond the rows
    for (std::int64_t i = rows; i < ldt; ++i) EXPECT_EQ(out[j * ldt + i], 0xdead);
}

/// Forward, then the backward (policy plan and small plans) under the current path; checks the backward Report's
/// suffix (want) and every gradient against the oracle.
void check_backward_on_path(CaseTensors& t, const std::string& want) {
  Options opt = t.c.options;
  opt.return_lse = true;
  run_forward(t, opt);
  const BackwardOracle ref = oracle_backward(t);
  const BackwardYardstick naive = naive_backward(t, ref);
  for (const std::optional<cpu::BackwardPlan>& plan :
       {std::optional<cpu::BackwardPlan>{}, std::optional<cpu::BackwardPlan>{cpu::BackwardPlan{12, 32, 96}},
        std::optional<cpu::BackwardPlan>{cpu::BackwardPlan{48, 64, 192}}}) {
    const Report r = run_backward(t, opt, plan);
    EXPECT_EQ(ends_with(r.kernel, "_amx"), want == "_amx") << r.kernel;
    if (!want.empty()) EXPECT_TRUE(ends_with(r.kernel, want)) << r.kernel;
    expect_backward_ok(t, ref, naive, r.kernel);
  }
}

// The backward's five products on every path the machine has: head dims that pad (D = 16, 59, 80, 200), odd
// lengths, GQA, causal and not, Nq != Nk. f16 takes the same paths on bf16 pieces ("_split2"; more in
// tests/cpu/test_split_backward.cc).
TEST(CpuMatmul, BackwardOnEveryPathMatchesTheOracle) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  struct Shape {
    std::int64_t b, nq, nk, hq, hkv, d;
    bool causal;
  };
  const std::vector<Shape> shapes = {{1, 1, 1, 1, 1, 16, false},  {2, 37, 53, 4, 2, 59, true},
                                     {1, 130, 300, 2, 1, 128, true}, {2, 200, 200, 3, 3, 64, false},
                                     {1, 17, 250, 2, 2, 80, true},   {1, 70, 33, 2, 1, 200, false}};
  for (const Shape& sh : shapes)
    for (DType dt : {DType::bf16, DType::f16}) {
      Case c;
      c.dtype = dt;
      c.batch = sh.b, c.nq = sh.nq, c.nk = sh.nk, c.hq = sh.hq, c.hkv = sh.hkv, c.d = sh.d;
      c.options.causal = sh.causal;
      SCOPED_TRACE(c.name());
      CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
      for (const char* path : paths()) {
        SCOPED_TRACE(path);
        ScopedMatmul m(path);
        const bool split = dt == DType::f16 && std::string(path) != "fp32";
        check_backward_on_path(t, suffix_of(path) + (split ? "_split2" : ""));
      }
    }
}

// Every feature row of the table (masks, softcap, ALiBi, sinks, dropout, bias, varlen, block-sparse ...) through
// the backward on each bf16 path the machine has.
TEST(CpuMatmul, BackwardFeatureTableOnBf16Paths) {
  for (const char* path : paths()) {
    if (std::string(path) == "fp32") continue;  // the fp32 path: Cpu/BackwardFeature.* (cpu_backward_matmul_fp32)
    SCOPED_TRACE(path);
    ScopedMatmul m(path);
    Seeded s;
    SCOPED_TRACE(s.trace());
    for (const Feature& f : features()) {
      const Case c = feature_case(f, DType::bf16);
      SCOPED_TRACE(c.name());
      CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
      check_backward_on_path(t, suffix_of(path));
    }
  }
}

// dQ, dK, dV are bitwise identical across runs and for 1, 2 and 3 threads on each bf16 path (Options::deterministic
// holds by construction there too: one thread owns each output element, AMX and VDPBF16PS are deterministic).
TEST(CpuMatmul, BackwardBitwiseReproducibleOnBf16Paths) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  Case c;
  c.dtype = DType::bf16, c.batch = 2, c.nq = 150, c.nk = 230, c.hq = 4, c.hkv = 2, c.d = 64;
  c.options.causal = true;
  c.options.return_lse = true;
  CaseTensors t = make_case(c, s.rng, true);
  run_forward(t, c.options);
  for (const char* path : paths()) {
    if (std::string(path) == "fp32") continue;
    SCOPED_TRACE(path);
    ScopedMatmul m(path);
    std::vector<std::vector<unsigned char>> grads;
    for (int threads : {1, 2, 2, 3})
      for (bool det : {false, true}) {
        Options opt = c.options;
        opt.num_threads = threads;
        opt.deterministic = det;
        const Report r = run_backward(t, opt);
        EXPECT_TRUE(ends_with(r.kernel, suffix_of(path))) << r.kernel;
        std::vector<unsigned char> g(t.dq.storage.begin(), t.dq.storage.end());
        g.insert(g.end(), t.dk.storage.begin(), t.dk.storage.end());
        g.insert(g.end(), t.dv.storage.begin(), t.dv.storage.end());
        grads.push_back(std::move(g));
      }
    for (std::size_t i = 1; i < grads.size(); ++i) EXPECT_TRUE(grads[i] == grads[0]) << "run " << i;
  }
}

// auto: bf16 and f16 (as bf16 pieces) take AMX where it exists, forward and backward alike; without AMX, bf16 takes
// AVX512-BF16 on the CPUs listed as faster with it (kFastDpbf16, detect.cc) and f16 the fp32 path; f32 the fp32 path.
TEST(CpuMatmul, Bf16AndF16TakeAmxByDefault) {
  ScopedMatmul m("auto");
  EXPECT_EQ(path_of(DType::f32), cpu::MatmulPath::fp32);
  const bool amx = cpu::amx_available();
  const cpu::MatmulPath bf16 = amx                              ? cpu::MatmulPath::amx
                               : cpu::avx512bf16_outruns_fp32() ? cpu::MatmulPath::avx512bf16
                                                                : cpu::MatmulPath::fp32;
  const cpu::MatmulPath f16 = amx ? cpu::MatmulPath::amx : cpu::MatmulPath::fp32;
  EXPECT_EQ(path_of(DType::bf16), bf16);
  EXPECT_EQ(path_of(DType::f16), f16);  // the split path (detect.cc)
  for (DType dt : {DType::bf16, DType::f16}) {
    Problem p;
    p.dtype = dt;
    EXPECT_EQ(cpu::backward_matmul(p), dt == DType::bf16 ? bf16 : f16) << name(dt);  // the forward's path
  }
  // The rule itself on a machine with and without AMX (any CPU can run choose_matmul).
  cpu::MatmulUnits u;
  u.amx = u.dpbf16 = u.dpbf16_built = true;
  EXPECT_EQ(cpu::choose_matmul(DType::f16, Fp32Matmul::exact, "", u), cpu::MatmulPath::amx);
  u.amx = false;
  EXPECT_EQ(cpu::choose_matmul(DType::f16, Fp32Matmul::exact, "auto", u), cpu::MatmulPath::fp32);
  EXPECT_EQ(cpu::choose_matmul(DType::f16, Fp32Matmul::exact, "avx512bf16", u), cpu::MatmulPath::avx512bf16);
  ScopedMatmul f("fp32");
  EXPECT_EQ(path_of(DType::bf16), cpu::MatmulPath::fp32);
  EXPECT_EQ(path_of(DType::f16), cpu::MatmulPath::fp32);
  if (cpu::avx512bf16_available()) {
    ScopedMatmul a("avx512bf16");
    EXPECT_EQ(path_of(DType::bf16), cpu::MatmulPath::avx512bf16);
    EXPECT_EQ(path_of(DType::f16), cpu::MatmulPath::avx512bf16);
    EXPECT_EQ(path_of(DType::f32), cpu::MatmulPath::fp32);
  }
}

TEST(CpuMatmul, BadValueIsAnErrorNamingTheVariable) {
  ScopedMatmul m("tiles");
  try {
    (void)path_of(DType::bf16);
    FAIL() << "no Error for FLATATTN_CPU_MATMUL=tiles";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("FLATATTN_CPU_MATMUL"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tiles"), std::string::npos) << e.what();
  }
  if (!cpu::amx_available()) {  // forcing AMX where it cannot run is refused, never a silent fallback
    ScopedMatmul a("amx");
    EXPECT_THROW((void)path_of(DType::bf16), Error);
  }
  if (!cpu::avx512bf16_available()) {  // likewise AVX512-BF16 (absent, or not built)
    ScopedMatmul a("avx512bf16");
    EXPECT_THROW((void)path_of(DType::bf16), Error);
  }
}

}  // namespace

namespace {

// The AVX-512 packers (src/cpu/amx/pack_avx512.cc) against the scalar reference packers, bit for bit: bf16 and
// f32 rows (f32 rounded to nearest even: ties, NaN, infinities, denormals, signed zeros among the values), head
// dims that are not multiples of 32 (or odd), key counts that are not multiples of 16, strided rows.
TEST(CpuMatmul, VectorPackersMatchTheScalarOnes) {
  if (!cpu::amx_available() && !cpu::avx512bf16_available()) GTEST_SKIP() << "no bf16 path (AVX-512) here";
  Seeded s;
  SCOPED_TRACE(s.trace());
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::infinity(), 1e-40f, -1e-40f, 0.f, -0.f,
                            1.00390625f /* 1 + 2^-8: a tie */, 1.01171875f /* 1 + 3 * 2^-8: a tie, odd */,
                            3.4e38f /* rounds to inf */};
  for (const std::int64_t d : {1, 7, 16, 31, 32, 59, 64, 80, 128, 130, 256}) {
    for (const std::int64_t count : {1, 15, 16, 17, 33, 100}) {
      for (const DType dt : {DType::bf16, DType::f32}) {
        SCOPED_TRACE("d=" + std::to_string(d) + " count=" + std::to_string(count) + " " + std::string(name(dt)));
        const std::int64_t stride = d + 5, count_pad = (count + 31) / 32 * 32, rows = count + 3;
        std::vector<float> f(static_cast<std::size_t>(rows * stride));
        for (std::size_t i = 0; i < f.size(); ++i)
          f[i] = s.rng() % 7 == 0 ? specials[s.rng() % std::size(specials)] : u(s.rng);
        std::vector<std::uint16_t> h(f.size());
        for (std::size_t i = 0; i < f.size(); ++i) h[i] = s.rng() % 2 ? float_to_bf16(f[i]) : static_cast<std::uint16_t>(s.rng());
        const cpu::Rows src{dt == DType::f32 ? static_cast<const void*>(f.data()) : h.data(), dt, 2 * stride, stride};
        const std::int64_t kd = cpu::amx_kd(d), dp = cpu::padded_d(d);
        const auto compare = [&](auto&& vec, auto&& ref, std::size_t n, const char* what) {
          std::vector<std::uint16_t> a(n, 0xdead), b(n, 0xbeef);
          vec(a.data());
          ref(b.data());
          std::size_t bad = 0;
          for (std::size_t i = 0; i < n; ++i) bad += a[i] != b[i];
          EXPECT_EQ(bad, 0u) << what;
        };
        const std::int64_t kcount = std::min<std::int64_t>(count, rows - 2);  // keys from row 2 (base offset)
        compare([&](std::uint16_t* o) { cpu::pack_k_vnni(src, kcount, count_pad, d, kd, o); },
                [&](std::uint16_t* o) { cpu::pack_k_vnni_ref(src, kcount, count_pad, d, kd, o); },
                static_cast<std::size_t>(count_pad * kd), "K panels");
        compare([&](std::uint16_t* o) { cpu::pack_v_vnni(src, kcount, count_pad, d, dp, o); },
                [&](std::uint16_t* o) { cpu::pack_v_vnni_ref(src, kcount, count_pad, d, dp, o); },
                static_cast<std::size_t>(count_pad * dp), "V pairs");
        const std::int64_t n0 = 1, qcount = std::min<std::int64_t>(count, rows - 3), rows_pad = (qcount + 15) / 16 * 16;
        compare([&](std::uint16_t* o) { cpu::pack_q_bf16(src, n0, qcount, rows_pad, d, kd, o); },
                [&](std::uint16_t* o) { cpu::pack_q_bf16_ref(src, n0, qcount, rows_pad, d, kd, o); },
                static_cast<std::size_t>(rows_pad * kd), "Q tile");
      }
    }
  }
}

}  // namespace
