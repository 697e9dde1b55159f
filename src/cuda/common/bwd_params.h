// The POD handed to every backward kernel (pre-pass, main kernel, dQ conversion): the forward's
// parameters (q, k, v, the forward output o, lse, lengths, logits, mask) plus the gradients, their
// strides and the workspace. Built on the host by make_bwd_params (src/cuda/params_host.h).
#pragma once

#include <cstdint>

#include "src/core/mask.h"  // FLATATTN_HD
#include "src/cuda/common/params.h"

namespace flatattn::cuda {

/// The deterministic mode's bound inputs over the keys (common/repro_dq.cuh): maxima over the call,
/// kept as the bits of non-negative floats (atomicMax on int orders them); zeroed by the launcher.
struct DqBound {
  float k_abs = 0.f;   ///< max |K| over every element
  float v_norm = 0.f;  ///< max over key rows of |V_j| (2-norm)
};

struct BwdParams {
  FwdParams f;  ///< f.o is the forward's output (read here), f.lse its log-sum-exp (required)
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  // Element strides: batch, sequence row, head (the head dim is contiguous). Varlen: batch unused.
  std::int64_t do_b = 0, do_n = 0, do_h = 0;
  std::int64_t dq_b = 0, dq_n = 0, dq_h = 0;
  std::int64_t dk_b = 0, dk_n = 0, dk_h = 0;
  std::int64_t dv_b = 0, dv_n = 0, dv_h = 0;
  // Workspace, indexed by (head, batch, row) with rows padded to f.nq (the longest sequence), so
  // varlen offsets never reach past it: ws_row(h, b) + i.
  /// (Hq, B, f.nq, kernel D) fp32: dQ / scale, summed over key blocks; deterministic: the same size,
  /// int32 sums in units of the row's dq_unit, column pairs as 64-bit words (common/repro_dq.cuh).
  float* dq_accum = nullptr;
  float* dq_unit = nullptr;     ///< deterministic: (Hq, B, f.nq) each row's unit u_i (NaN: the row is NaN)
  DqBound* dq_bound = nullptr;  ///< deterministic: maxima over K and V
  float* dsum = nullptr;        ///< (Hq, B, f.nq) fp32: D_i = rowsum(dO o O)
  int batch = 0, hq = 0, hkv = 0;
  int n_m_blocks = 0, n_n_blocks = 0;  ///< ceil(f.nq / BlockM), ceil(f.nk / BlockN)
  float ds_scale = 1.f;  ///< d(logit)/d(q.k) outside the score hook: the softmax scale
  int deterministic = 0;
  /// dbias (below): the kernel also writes the zeros of the rows no step visits (no zeroing pass first). Here, in
  /// the padding before dsinks, so that no field moves and the kernels' sizes and offsets stay as they were.
  int dbias_zero_rest = 0;
  float* dsinks = nullptr;  ///< (Hq) fp32: d loss / d sink_h (bwd_sinks_kernel); null: not requested
  // The additive bias's gradient (common/dbias.cuh): dS of (b, h, i, j) goes to dbias[b * dbias_b + h * dbias_h +
  // i * dbias_i + j] in dbias_dtype (0 f32, 1 f16, 2 bf16), or is added with fp32 atomics (dbias_atomic: the
  // dispatch's workspace of a broadcast bias); null: not requested.
  void* dbias = nullptr;
  std::int64_t dbias_b = 0, dbias_h = 0, dbias_i = 0;
  int dbias_dtype = 0, dbias_atomic = 0;
  /// 1: dq, dk, dv are fp32 (16-bit inputs; the caller sums several calls' gradients and rounds once, as ring
  /// attention's hops): the dQ conversion and the dK/dV epilogue store the fp32 values they would round.
  int grad_f32 = 0;

  /// Workspace row of (query head h, sequence b, row 0).
  [[nodiscard]] FLATATTN_HD std::int64_t ws_row(int h, int b) const {
    return (static_cast<std::int64_t>(h) * batch + b) * f.nq;
  }
};

}  // namespace flatattn::cuda
