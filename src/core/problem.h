// The validated, normalized description of one attention call that every backend receives.
#pragma once

#include <cstdint>
#include <memory>

#include "flatattn/attention.h"
#include "src/core/mask.h"
#include "src/core/sparse.h"
#include "src/core/variant.h"

namespace flatattn {

/// Element strides of a (sequence-row, head) addressed tensor: element (b, n, h, d) of a batched
/// tensor is at b*b + n*n + h*h + d; for varlen, b is unused and n is the packed row index.
struct RowStrides {
  std::int64_t b = 0, n = 0, h = 0;
};

/// Everything a kernel needs, validated: shapes, strides, scalars and the mask.
struct Problem {
  DType dtype = DType::f32;
  Device device{};
  std::int64_t batch = 0;  ///< B
  std::int64_t hq = 0, hkv = 0, d = 0;
  std::int64_t nq = 0, nk = 0;  ///< batched: the lengths; varlen: max_seqlen_q / max_seqlen_k
  bool varlen = false;
  const std::int32_t* cu_seqlens_q = nullptr;  ///< varlen only; on `device`
  const std::int32_t* cu_seqlens_k = nullptr;
  float scale = 1.f;
  VariantArgs variant{};  ///< the feature arguments of the variant hooks (src/core/variant.h)
  MaskSpec mask{};
  Dataflow dataflow = Dataflow::automatic;
  int num_threads = 0;
  bool deterministic = false;
  std::int64_t total_q = 0, total_k = 0;  ///< rows of q/out and k/v: B * Nq and B * Nk, varlen: the packed rows

  [[nodiscard]] std::int64_t group() const { return hq / hkv; }  ///< query heads per kv head
  SparseSpec sparse{};  ///< block-sparse lists and element rule (src/core/sparse.h); off: dense
  std::shared_ptr<const void> sparse_storage;  ///< host lists the library derived (keeps sparse's pointers alive)
  Fp32Matmul fp32_matmul = Fp32Matmul::exact;   ///< Options::fp32_matmul (the CPU engine's f32 products)
};

/// Tensors of a forward call. lse (fp32) may be null. LSE strides: (b, h, n); varlen: (h, n) with b = 0.
struct FwdTensors {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;
  RowStrides sq, sk, sv, so;
  RowStrides slse;  ///< n = stride along rows of the sequence, h = per head, b = per batch
  const float* sinks = nullptr;  ///< attention sinks (Hq) fp32, contiguous; null: off
};

/// The additive bias's gradient (BackwardArgs::dbias): shape (nb, nh, nq, nk) with nb in {1, B}, nh in {1, Hq},
/// nq in {1, Nq} (size 1: summed over that dim), element strides sb, sh, si (0 for a size-1 dim), last dim
/// contiguous, in `dtype` (the bias's).
struct BiasGrad {
  void* data = nullptr;
  DType dtype = DType::f32;
  std::int64_t nb = 0, nh = 0, nq = 0, nk = 0;
  std::int64_t sb = 0, sh = 0, si = 0;
  /// Set by the CUDA dispatch only, for its fp32 workspace of a broadcast bias: the kernels add into data
  /// with fp32 atomics instead of storing.
  bool accumulate = false;
  /// Set by the CUDA dispatch only: the kernels also write the zeros of the (b, h, i, j) no step visits.
  bool kernel_zeros = false;
};

/// Tensors of a backward call. lse (fp32) is required.
struct BwdTensors {
  const void* dout = nullptr;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* o = nullptr;
  const float* lse = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  RowStrides sdo, sq, sk, sv, so, slse, sdq, sdk, sdv;
  const float* sinks = nullptr;  ///< attention sinks (Hq) fp32, contiguous; null: off
  float* dsinks = nullptr;       ///< their gradient (Hq) fp32, written when non-null (needs sinks)
  BiasGrad dbias{};              ///< the bias's gradient, written when dbias.data is non-null (needs a bias)
  /// dq, dk, dv's dtype: the inputs' (Problem::dtype), or f32 with 16-bit inputs (a caller that sums gradients over
  /// several calls, as ring attention's hops, then rounds once; validate.cc check_grads).
  DType grad_dtype = DType::f32;
};

/// Row offsets and lengths of sequence b (host-side cu_seqlens for varlen).
struct SeqSpan {
  std::int64_t q0, nq, k0, nk;
};

inline SeqSpan seq_span(const Problem& p, std::int64_t b) {
  if (!p.varlen) return {0, p.nq, 0, p.nk};
  const std::int64_t q0 = p.cu_seqlens_q[b], k0 = p.cu_seqlens_k[b];
  return {q0, p.cu_seqlens_q[b + 1] - q0, k0, p.cu_seqlens_k[b + 1] - k0};
}

/// Element offset of row `n` (within sequence b), head h of a tensor with strides s.
inline std::int64_t row_offset(const Problem& p, const RowStrides& s, std::int64_t b, std::int64_t seq_row0,
                               std::int64_t n, std::int64_t h) {
  return p.varlen ? (seq_row0 + n) * s.n + h * s.h : b * s.b + n * s.n + h * s.h;
}

}  // namespace flatattn
