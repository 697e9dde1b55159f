// CUDA argument checks. See check_args.h.
#include "src/cuda/check_args.h"

#include <cstdint>
#include <initializer_list>
#include <string>

#include "src/core/validate.h"

namespace flatattn::cuda {

namespace {

/// A tensor the kernels address in 16-byte chunks of rows.
struct View {
  const char* name;
  const void* data;
  RowStrides s;
  std::int64_t rows, heads;
};

void check_views(const Problem& p, std::initializer_list<View> views) {
  FLATATTN_REQUIRE(p.d % 8 == 0, "q", "head dim D = " + std::to_string(p.d),
                   "on CUDA D must be a multiple of 8 (rows move in 16-byte chunks)",
                   "zero-pad q, k and v to a multiple of 8 (the result is unchanged) and slice the output");
  FLATATTN_REQUIRE(p.d <= 256, "q", "head dim D = " + std::to_string(p.d), "D <= 256 on CUDA (the largest kernel)",
                   "split the head dim, or run on the CPU");
  constexpr std::int64_t kMaxLen = (std::int64_t{1} << 31) - 1;
  FLATATTN_REQUIRE(p.nq <= kMaxLen && p.nk <= kMaxLen, "q/k",
                   "Nq = " + std::to_string(p.nq) + ", Nk = " + std::to_string(p.nk), "sequence lengths < 2^31 on CUDA",
                   "split the sequence");
  for (const View& v : views) {
    const auto misalign = reinterpret_cast<std::uintptr_t>(v.data) % 16;
    FLATATTN_REQUIRE(misalign == 0, v.name, "data pointer at byte offset " + std::to_string(misalign) + " mod 16",
                     "16-byte aligned on CUDA",
                     "pass a tensor whose storage starts 16-byte aligned (e.g. .contiguous())");
    const bool ok = (p.varlen || p.batch <= 1 || v.s.b % 8 == 0) && (v.rows <= 1 || p.varlen || v.s.n % 8 == 0) &&
                    (!p.varlen || v.s.n % 8 == 0) && (v.heads <= 1 || v.s.h % 8 == 0);
    FLATATTN_REQUIRE(ok, v.name,
                     "strides (batch " + std::to_string(v.s.b) + ", row " + std::to_string(v.s.n) + ", head " +
                         std::to_string(v.s.h) + ") elements",
                     "multiples of 8 elements (16 bytes) on CUDA",
                     "pass a view whose rows start 16-byte aligned (.contiguous())");
  }
}

}  // namespace

void check_cuda_args(const Problem& p, const FwdTensors& t) {
  check_views(p, {{"q", t.q, t.sq, p.nq, p.hq}, {"k", t.k, t.sk, p.nk, p.hkv},
                  {"v", t.v, t.sv, p.nk, p.hkv}, {"out", t.o, t.so, p.nq, p.hq}});
}

void check_cuda_args(const Problem& p, const BwdTensors& t) {
  check_views(p, {{"dout", t.dout, t.sdo, p.nq, p.hq}, {"q", t.q, t.sq, p.nq, p.hq},
                  {"k", t.k, t.sk, p.nk, p.hkv}, {"v", t.v, t.sv, p.nk, p.hkv},
                  {"out", t.o, t.so, p.nq, p.hq}, {"dq", t.dq, t.sdq, p.nq, p.hq},
                  {"dk", t.dk, t.sdk, p.nk, p.hkv}, {"dv", t.dv, t.sdv, p.nk, p.hkv}});
}

}  // namespace flatattn::cuda
