// CUDA argument checks. See check_args.h.
#include "src/cuda/check_args.h"

#include <cstdint>
#include <initializer_list>
#include <string>

#include "src/core/validate.h"

namespace flatattn::cuda {

namespace {

/// A (rows, heads, D) tensor of the call.
struct View {
  const char* name;
  const void* data;
  RowStrides s;
  std::int64_t rows, heads;
};

bool check_views(const Problem& p, std::initializer_list<View> views) {
  FLATATTN_REQUIRE(p.d <= 256, "q", "head dim D = " + std::to_string(p.d), "D <= 256 on CUDA (the largest kernel)",
                   "split the head dim, or run on the CPU");
  constexpr std::int64_t kMaxLen = (std::int64_t{1} << 31) - 1;
  FLATATTN_REQUIRE(p.nq <= kMaxLen && p.nk <= kMaxLen, "q/k",
                   "Nq = " + std::to_string(p.nq) + ", Nk = " + std::to_string(p.nk), "sequence lengths < 2^31 on CUDA",
                   "split the sequence");
  bool direct = true;
  for (const View& v : views) {
    const auto misalign = reinterpret_cast<std::uintptr_t>(v.data) % 2;
    FLATATTN_REQUIRE(misalign == 0, v.name, "data pointer at an odd byte address",
                     "aligned to its 2-byte elements on CUDA",
                     "pass a tensor whose storage starts at an element boundary (e.g. .contiguous())");
    direct = direct && kernel_addressable(p, v.data, v.s, v.rows, v.heads);
  }
  return direct;
}

}  // namespace

bool kernel_addressable(const Problem& p, const void* data, const RowStrides& s, std::int64_t rows,
                        std::int64_t heads) {
  return p.d % 8 == 0 && reinterpret_cast<std::uintptr_t>(data) % 16 == 0 &&
         (p.varlen || p.batch <= 1 || s.b % 8 == 0) && (rows <= 1 || p.varlen || s.n % 8 == 0) &&
         (!p.varlen || s.n % 8 == 0) && (heads <= 1 || s.h % 8 == 0);
}

/// The kernels address a bias (and dbias, and its workspaces: row stride Nk) within a (b, h) slice in 32 bits.
void check_bias_slice(const Problem& p, std::int64_t row_stride, const char* name) {
  if (p.variant.bias == nullptr) return;
  const std::int64_t span = row_stride * (p.nq > 0 ? p.nq - 1 : 0) + p.nk;
  FLATATTN_REQUIRE(span < (std::int64_t{1} << 32) && p.nk < (std::int64_t{1} << 32) && p.nq * p.nk < (std::int64_t{1} << 32),
                   name, "a (b, h) slice spanning " + std::to_string(span) + " elements (row stride " +
                   std::to_string(row_stride) + ", Nq = " + std::to_string(p.nq) + ", Nk = " + std::to_string(p.nk) + ")",
                   "below 2^32 elements per (batch, head) slice on CUDA", "split the sequence, or run on the CPU");
}

bool check_cuda_args(const Problem& p, const FwdTensors& t) {
  check_bias_slice(p, p.variant.bias_si, "bias");
  return check_views(p, {{"q", t.q, t.sq, p.nq, p.hq}, {"k", t.k, t.sk, p.nk, p.hkv},
                         {"v", t.v, t.sv, p.nk, p.hkv}, {"out", t.o, t.so, p.nq, p.hq}});
}

bool check_cuda_args(const Problem& p, const BwdTensors& t) {
  check_bias_slice(p, p.variant.bias_si, "bias");
  if (t.dbias.data != nullptr) check_bias_slice(p, t.dbias.si, "dbias");
  if (p.dtype != DType::f32 && t.grad_dtype == DType::f32)  // fp32 gradients: stored by the kernels, never staged
    for (const View& g : {View{"dq", t.dq, t.sdq, p.nq, p.hq}, View{"dk", t.dk, t.sdk, p.nk, p.hkv},
                          View{"dv", t.dv, t.sdv, p.nk, p.hkv}})
      FLATATTN_REQUIRE(kernel_addressable(p, g.data, g.s, g.rows, g.heads), g.name,
                       "float32 with D = " + std::to_string(p.d) + ", row stride " + std::to_string(g.s.n) +
                           ", head stride " + std::to_string(g.s.h) + " (elements)",
                       "float32 gradients of 16-bit inputs on CUDA need D a multiple of 8, 16-byte aligned data and "
                       "row/head/batch strides that are multiples of 8 elements (the padding copies are 16-bit only)",
                       "pass contiguous float32 dq, dk, dv with D a multiple of 8, or 16-bit gradients like q, k, v");
  return check_views(p, {{"dout", t.dout, t.sdo, p.nq, p.hq}, {"q", t.q, t.sq, p.nq, p.hq},
                         {"k", t.k, t.sk, p.nk, p.hkv}, {"v", t.v, t.sv, p.nk, p.hkv},
                         {"out", t.o, t.so, p.nq, p.hq}, {"dq", t.dq, t.sdq, p.nq, p.hq},
                         {"dk", t.dk, t.sdk, p.nk, p.hkv}, {"dv", t.dv, t.sdv, p.nk, p.hkv}});
}

}  // namespace flatattn::cuda
