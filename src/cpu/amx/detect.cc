// Run-time detection of AMX-BF16 and the forward's product path (see amx.h). Compiled with the
// engine's ordinary flags: it runs on any x86-64.
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "flatattn/error.h"
#include "src/core/validate.h"
#include "src/cpu/amx/amx.h"

namespace flatattn::cpu {

namespace {

constexpr long kArchReqXcompPerm = 0x1023;  // Linux arch/x86/include/uapi/asm/prctl.h
constexpr long kXfeatureXtiledata = 18;     // XCR0 bit of the tile data state

bool cpu_and_os_have_amx() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid(1, a, b, c, d);
  if (!(c & (1u << 27))) return false;  // OSXSAVE: XGETBV usable
  __cpuid_count(7, 0, a, b, c, d);
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  if (!amx_bf16 || !amx_tile) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & (3u << 17)) == (3u << 17);  // XTILECFG and XTILEDATA enabled by the OS
}

bool cpu_and_os_have_avx512bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid(1, a, b, c, d);
  if (!(c & (1u << 27))) return false;  // OSXSAVE: XGETBV usable
  __cpuid_count(7, 0, a, b, c, d);
  const bool f = b & (1u << 16), bw = b & (1u << 30);
  if (!f || !bw || a < 1) return false;  // sub-leaf 1 exists when leaf 7.0 EAX >= 1
  __cpuid_count(7, 1, a, b, c, d);
  if (!(a & (1u << 5))) return false;  // AVX512_BF16
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0xE6u) == 0xE6u;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state enabled by the OS
}

/// CPUs whose AVX512-BF16 products outrun the fp32 path, by vendor (CPUID leaf 0) and display family (leaf 1:
/// base family + extended family): "auto" takes avx512bf16 on them where AMX is absent. Listed only where it was
/// measured; elsewhere a user may force it (FLATATTN_CPU_MATMUL=avx512bf16) and measure.
struct FastDpbf16 {
  const char* vendor;    ///< CPUID leaf 0 vendor string
  unsigned family;       ///< display family
  const char* cores;     ///< the microarchitecture
  const char* evidence;  ///< the measurement that put it here
};
constexpr FastDpbf16 kFastDpbf16[] = {
    {"AuthenticAMD", 0x1A, "Zen 5",
     "EPYC, 1 thread: bf16 forward 1.8-1.9x the fp32 path's speed (bench/results/cpu-zen5-avx512bf16-2026-12-08.md)"},
};
// Not listed: Intel CPUs (a Sapphire Rapids-class VM with AMX unused ran avx512bf16 at 0.62-0.92x the fp32 path,
// bench/results/cpu-vs-torch-2026-12-06.md; AMX is taken first there anyway) and AMD Zen 4 (family 0x19: its
// 512-bit VDPBF16PS is expected to gain as Zen 5's does, but it has not been measured).

bool cpu_is_fast_dpbf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  __cpuid(0, a, b, c, d);
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  __cpuid(1, a, b, c, d);
  const unsigned base = (a >> 8) & 0xFu, family = base == 0xFu ? base + ((a >> 20) & 0xFFu) : base;
  for (const FastDpbf16& f : kFastDpbf16)
    if (std::string_view(vendor) == f.vendor && family == f.family) return true;
  return false;
}

bool request_permission() {
#if defined(__linux__)
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

}  // namespace

bool amx_available() {
  static const bool ok = cpu_and_os_have_amx() && request_permission();  // once per process
  return ok;
}

bool avx512bf16_built() {
#if defined(FLATATTN_HAVE_AVX512BF16)
  return true;
#else
  return false;
#endif
}

bool avx512bf16_available() {
  static const bool ok = avx512bf16_built() && cpu_and_os_have_avx512bf16();
  return ok;
}

bool avx512bf16_outruns_fp32() {
  static const bool ok = avx512bf16_available() && cpu_is_fast_dpbf16();
  return ok;
}

MatmulUnits matmul_units() {
  MatmulUnits u;
  u.amx = amx_available();
  u.dpbf16 = avx512bf16_available();
  u.dpbf16_built = avx512bf16_built();
  u.dpbf16_outruns_fp32 = avx512bf16_outruns_fp32();
  return u;
}

const char* matmul_suffix(MatmulPath path) {
  switch (path) {
    case MatmulPath::amx:
      return "_amx";
    case MatmulPath::avx512bf16:
      return "_avx512bf16";
    case MatmulPath::fp32:
      break;
  }
  return "";
}

MatmulPath choose_matmul(DType dt, Fp32Matmul fp32_matmul, std::string_view env, const MatmulUnits& units) {
  const std::string v(env);
  require(v.empty() || v == "auto" || v == "amx" || v == "avx512bf16" || v == "fp32", "FLATATTN_CPU_MATMUL", v,
          "one of auto, amx, avx512bf16, fp32", "unset it or set auto, amx, avx512bf16 or fp32");
  if (fp32_matmul == Fp32Matmul::bf16 && dt == DType::f16) {
    throw Error(Error::Kind::unsupported, "fp32_matmul", "bf16 with f16 inputs",
                "applies to f32 inputs (bf16 inputs already run bf16 products; f16 inputs have no bf16 path)",
                "leave fp32_matmul at exact for f16 inputs, or convert them to bf16 or f32");
  }
  const bool opt_in = fp32_matmul == Fp32Matmul::bf16 && dt == DType::f32;  // bf16 inputs: the rule unchanged
  const bool split = dt == DType::f16;  // f16: exact bf16 pieces (SplitPolicy, amx.h): no opt-in needed
  const bool bf16_operands = dt == DType::bf16 || opt_in || split;
  if (!bf16_operands || v == "fp32") return MatmulPath::fp32;
  // f16 takes the split path (exact bf16 pieces) by the bf16 rule, forward and backward alike (backward_matmul):
  // the backward recomputes S from the forward's piece products in the forward's order, so the LSE and S agree.
  // (Before the split backward existed, auto kept f16 on the fp32 path: the split forward's LSE against the
  // fp32 backward's S put dQ over the rule with large softcapped logits in CI's fuzz, stop 29.)
  if (v == "amx") {
    require(units.amx, "FLATATTN_CPU_MATMUL", v, "AMX-TILE and AMX-BF16 usable in this process",
            "unset it or set fp32 (this CPU or OS has no AMX-BF16, or the tile permission was refused)");
    return MatmulPath::amx;
  }
  if (v == "avx512bf16") {
    require(units.dpbf16_built, "FLATATTN_CPU_MATMUL", v, "a build with the AVX512-BF16 kernels",
            "unset it or set fp32 (the compiler of this build refused -mavx512bf16; rebuild with GCC >= 10 or "
            "Clang >= 9)");
    require(units.dpbf16, "FLATATTN_CPU_MATMUL", v, "AVX512F, AVX512BW and AVX512-BF16 usable",
            "unset it or set fp32 (this CPU or OS has no AVX512-BF16)");
    return MatmulPath::avx512bf16;
  }
  if (units.amx) return MatmulPath::amx;
  // auto without AMX. bf16 inputs: AVX512-BF16 on the CPUs where it was measured to outrun the fp32 path
  // (kFastDpbf16: AMD Zen 5, 1.8-1.9x); elsewhere the fp32 path: on an Intel CPU it ran at 0.62x (D = 64) and
  // 0.92x (D = 128) the fp32 path (bench/results/cpu-vs-torch-2026-12-06.md), and picking a slower path by
  // default would be a silent loss. f16 inputs (2 bf16 pieces, 3-4 products each) stay on fp32 without AMX.
  if (dt == DType::bf16 && units.dpbf16 && units.dpbf16_outruns_fp32) return MatmulPath::avx512bf16;
  if (!opt_in) return MatmulPath::fp32;
  // f32 inputs with the opt-in: the user asked for bf16 products; AVX512-BF16 serves them, and a CPU with
  // neither unit is an Error (never a silent exact fallback that the caller did not ask for).
  if (units.dpbf16) return MatmulPath::avx512bf16;
  throw Error(Error::Kind::unsupported, "fp32_matmul", "bf16",
              "needs AMX-BF16 or AVX512-BF16 usable in this process (this CPU, OS or build has neither)",
              "leave fp32_matmul at exact on this machine (the fp32 products are what it can run)");
}

MatmulPath forward_matmul(const Problem& p) {
  const char* env = std::getenv("FLATATTN_CPU_MATMUL");
  const std::string_view v = env ? env : "";
  MatmulUnits none;  // what a rule that cannot reach a bf16 path is told (no detection: it cannot matter)
  none.dpbf16_built = avx512bf16_built();
  // f32 exact under FLATATTN_CPU_F32_SPLIT: 3 bf16 pieces (split_policy) on a forced bf16 path only; auto keeps
  // the exact fp32 path (that split has no backward: its forward's LSE would not match the fp32 backward's S).
  if (p.dtype == DType::f32 && p.fp32_matmul == Fp32Matmul::exact && f32_split_products() != 0) {
    if (v.empty() || v == "auto") return choose_matmul(DType::f32, Fp32Matmul::exact, v, none);
    return choose_matmul(DType::f16, Fp32Matmul::exact, v, matmul_units());
  }
  // Detection is asked only where it can matter (the AMX permission request is a syscall, once per process).
  const bool bf16_operands = p.dtype == DType::bf16 || p.dtype == DType::f16 ||
                             (p.dtype == DType::f32 && p.fp32_matmul == Fp32Matmul::bf16);
  return choose_matmul(p.dtype, p.fp32_matmul, v, bf16_operands ? matmul_units() : none);
}

MatmulPath backward_matmul(const Problem& p) {
  // f32 as 3 pieces is forward only: its backward runs the exact fp32 products.
  if (p.dtype == DType::f32 && p.fp32_matmul == Fp32Matmul::exact && f32_split_products() != 0) return MatmulPath::fp32;
  return forward_matmul(p);  // f16: the forward's split (kSplitF16) on the same path
}

}  // namespace flatattn::cpu
