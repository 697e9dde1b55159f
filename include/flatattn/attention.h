// flatattn: exact fused attention, forward and backward.
//
// Shapes (FlashAttention layout; any strides with the last dim contiguous):
//   batched: q (B, Nq, Hq, D)   k, v (B, Nk, Hkv, D)   out (B, Nq, Hq, D)   lse (B, Hq, Nq) fp32
//   varlen:  q (total_q, Hq, D) k, v (total_k, Hkv, D) out (total_q, Hq, D) lse (Hq, total_q) fp32
//            with int32 cu_seqlens_q / cu_seqlens_k of shape (B + 1) on the tensors' device.
// Hq must be a multiple of Hkv (GQA; MQA when Hkv = 1): query head h reads kv head h / (Hq / Hkv).
// q, k, v, out (and dout, dq, dk, dv) share one dtype: f32 (CPU only), f16 or bf16.
// Head dim D: any on the CPU, 1..256 on CUDA; there a D that is not a multiple of 8, or a view whose rows
// are not 16-byte aligned, costs one extra copy of that tensor (zero-padded inside the library).
//
// Semantics (identical on every backend; the fp64 oracle in src/reference defines them):
//   S = scale * Q K^T (then softcap * tanh(S / softcap) when softcap > 0), masked by causal/window,
//   P = softmax(S) over the visible keys, O = P V, LSE = log sum_j exp(S_ij) (natural log).
//   With dropout_p > 0, O = (P o Z / (1 - dropout_p)) V with the keep mask Z of dropout_mask(); LSE unchanged.
//   A row with no visible key gives O = 0 and LSE = -inf (its gradients are 0).
//   ALiBi (ForwardArgs::alibi_slopes; Press et al., ICLR 2022): S_ij = scale * q_i.k_j - slope_{b,h} *
//   |i + Nk - Nq - j| before the mask, with the sequence's own Nq, Nk (varlen: each sequence's), for causal and
//   non-causal alike and also with top-left causal alignment (the distance is always to the bottom-right
//   diagonal, as FlashAttention-2, which has no top-left). FlashAttention-2's causal kernels add + slope * j
//   instead: the same P, O and gradients, but their LSE is ours + slope * (i + Nk - Nq).
//   Attention sinks (ForwardArgs::sinks; gpt-oss, Xiao et al. 2023): a per-head logit sink_h joins every
//   row's denominator without a value: O_i = sum_j e^S_ij v_j / (sum_j e^S_ij + e^sink_h),
//   LSE_i = log(sum_j e^S_ij + e^sink_h); a row with no visible key gives O = 0 and LSE = sink_h.
//   Additive bias (ForwardArgs::bias; T5 relative positions, AlphaFold pair bias, Swin, SDPA's float attn_mask):
//   S_ij = scale * q_i.k_j + bias[b, h, i, j] before the mask (as SDPA adds a float mask to scale Q K^T); the
//   backward returns dbias = dS = dL/dS (summed over the bias's broadcast dims) when BackwardArgs::dbias is given.
// Algorithms: Dao et al., "FlashAttention" (NeurIPS'22) Alg. 1-2 and "FlashAttention-2" (2023)
// Sec. 3 for the flash dataflow; Kao et al., "FLAT" (ASPLOS'23) Sec. 4 for the flat dataflow.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "flatattn/error.h"
#include "flatattn/options.h"
#include "flatattn/sparse.h"
#include "flatattn/tensor.h"

namespace flatattn {

/// Variable-length batch: sequence b spans rows [cu_seqlens_q[b], cu_seqlens_q[b+1]) of q/out and
/// [cu_seqlens_k[b], cu_seqlens_k[b+1]) of k/v. Both are int32 (B + 1), non-decreasing, starting at 0.
/// max_seqlen_q/k bound the per-sequence lengths; required on CUDA (grid size), computed when 0 on CPU.
///
/// Checking: CPU offsets are checked before anything runs (Error naming the argument). CUDA offsets live
/// on the device and are checked by the kernels as they read them: sequence b is invalid when
/// cu[b] < 0, cu[b+1] < cu[b], cu[b+1] > total (the packed rows of the tensors), cu[0] != 0, or a length
/// exceeds max_seqlen_q / max_seqlen_k. Whatever the offsets hold, no kernel reads or writes outside the
/// tensors. An invalid sequence is skipped: its rows of out and lse (of dq, and its key rows of dk, dv)
/// are not written (left as they were; where the call stages a view -- odd D or unaligned rows, see
/// above -- they hold unspecified values); the other sequences are computed as given. The violation is
/// raised as an Error of Kind::invalid_argument naming cu_seqlens_q, cu_seqlens_k, max_seqlen_q or
/// max_seqlen_k (in that order when several are bad):
///   - with the environment variable FLATATTN_CHECK_METADATA=1 (read at every varlen CUDA call; tests
///     and debugging), synchronously: the call waits for its stream and throws after the kernels ran;
///   - otherwise asynchronously (no synchronization): the violation is recorded in a per-device word
///     and the next forward()/backward() on that device throws it, doing nothing else; the word is then
///     cleared. With calls in flight on several streams the report may come one call later (or twice).
///     The first varlen call on a device allocates the word with a synchronous copy (do it before a
///     CUDA-graph capture).
///   - check_errors(device, stream) raises a pending violation now, without another attention call:
///     it waits for `stream` (null: every stream of the device) and throws what the calls ordered before
///     it found (clearing it), or returns.
struct Varlen {
  TensorView cu_seqlens_q;
  TensorView cu_seqlens_k;
  std::int64_t max_seqlen_q = 0;
  std::int64_t max_seqlen_k = 0;
};

/// Inputs and outputs of forward(). out (and lse when requested) are written; nothing else is.
struct ForwardArgs {
  TensorView q, k, v;
  TensorView out;
  TensorView lse;  ///< absent unless Options::return_lse
  std::optional<Varlen> varlen;
  /// ALiBi slopes, fp32 (Hq) or (B, Hq) (varlen: B sequences), on q's device, last dim contiguous;
  /// natural-log logit units per key of distance (BLOOM: 2^(-8 (h + 1) / Hq)). Absent: off.
  /// Not with Options::softcap > 0 (Error naming alibi_slopes).
  TensorView alibi_slopes;
  /// Attention sinks, fp32 (Hq) contiguous on q's device: one logit per query head in the units of
  /// the scaled logits (natural log). Absent: off. Composes with every other feature.
  TensorView sinks;
  /// Additive bias, rank 4 (Bb, Hb, Mq, Nk) broadcastable to (B, Hq, Nq, Nk): Bb in {1, B}, Hb in {1, Hq},
  /// Mq in {1, Nq} (1: one bias row for every query, e.g. a key padding mask); the last dim is Nk, contiguous
  /// (stride 1); other strides free (>= 0; a size-1 dim's stride is ignored). f32, f16 or bf16 (need not be
  /// q's dtype), on q's device, in the units of the scaled logits (natural log; -inf hides a key). Varlen: B
  /// sequences, Nq = max_seqlen_q, Nk = max_seqlen_k; sequence b's element (i, j), counted within the
  /// sequence, is bias[b, h, i, j] (rows and columns past its lengths are not read). Added after the scale,
  /// before the causal/window mask: S_ij = scale q_i.k_j + bias_bhij. Not with softcap, alibi_slopes or
  /// dropout_p > 0 (Error naming bias). Absent: off.
  TensorView bias;
  /// Block-sparse attention (include/flatattn/sparse.h): the key blocks each query block visits. Absent: dense.
  std::optional<BlockSparse> block_sparse;
  /// Local + global attention (Longformer, BigBird; include/flatattn/sparse.h). Absent: off.
  std::optional<LocalGlobal> local_global;
};

/// Inputs and outputs of backward(). lse is the forward's (required). dq, dk, dv are written
/// (overwritten, not accumulated); dk/dv have the k/v shapes (summed over the query heads of a group). Their dtype
/// is the inputs'; on the CPU, with f16/bf16 inputs, dq, dk, dv may instead all be f32: the engine's fp32
/// accumulators unrounded (for callers that sum gradients over calls, as ring attention; CUDA refuses it, Error
/// naming dq).
struct BackwardArgs {
  TensorView dout, q, k, v, out, lse;
  TensorView dq, dk, dv;
  std::optional<Varlen> varlen;
  TensorView alibi_slopes;  ///< the forward's (ForwardArgs::alibi_slopes); absent: off
  TensorView sinks;         ///< the forward's (ForwardArgs::sinks); lse must be the forward's with them
  /// Optional output, fp32 (Hq) contiguous, needs sinks: dsinks_h = -sum over (b, i) of
  /// e^(sink_h - LSE_i) * D_i with D_i = rowsum(dout_i * out_i), summed in a fixed order (deterministic).
  /// Written (overwritten) when present; dq, dk, dv do not change with sinks beyond the LSE.
  TensorView dsinks;
  TensorView bias;   ///< the forward's (ForwardArgs::bias); absent: off
  /// Optional output, needs bias: dL/dbias, the bias's shape and dtype (strides free, last dim contiguous),
  /// = dS_bhij = P_ij (dP_ij - D_i) summed over the dims where the bias is broadcast (size 1), accumulated
  /// in fp32; elements no visible (i, j) reaches (masked, past a varlen sequence) get 0. Written
  /// (overwritten). Default mode: a bias of full (B, Hq) is written by plain stores; a broadcast one is summed
  /// with fp32 atomics in a (bias-shaped) fp32 workspace on CUDA (run-to-run order-dependent in the last
  /// bits). Options::deterministic: bitwise reproducible (CUDA: a (B, Hq, Mq, Nk) fp32 workspace summed in
  /// a fixed order: 4 B Hq Mq Nk bytes). The CPU always sums in a fixed order.
  TensorView dbias;
  std::optional<BlockSparse> block_sparse;  ///< the forward's (ForwardArgs::block_sparse)
  std::optional<LocalGlobal> local_global;  ///< the forward's (ForwardArgs::local_global)
};

/// CUDA stream (a cudaStream_t) the work is ordered on; null = the legacy default stream.
/// Ignored for CPU tensors.
struct Stream {
  void* handle = nullptr;
};

/// What ran: shown by `flatattn run` and useful in logs.
struct Report {
  std::string backend;       ///< "cpu" or "cuda"
  Dataflow dataflow = Dataflow::flash;
  int block_m = 0;           ///< query rows per tile
  int block_n = 0;           ///< keys per tile (Nk for FLAT: the whole row)
  std::string kernel;        ///< kernel or instance name
};

/// Attention forward: out = softmax(mask(scale * q k^T)) v, and lse when requested.
/// Runs on the device of the tensors (all on one device). Throws flatattn::Error on invalid input,
/// before any output is written (except CUDA varlen offsets, checked by the kernels: see Varlen).
/// On CUDA the call is asynchronous on `stream`.
Report forward(const ForwardArgs& args, const Options& options = {}, Stream stream = {});

/// Attention backward: dq, dk, dv from dout, q, k, v, out and the forward's lse.
/// P is recomputed from lse; D_i = rowsum(dout * out) (FlashAttention-2, Alg. 2). Nothing N x N is stored.
Report backward(const BackwardArgs& args, const Options& options = {}, Stream stream = {});

/// The dropout keep mask of a call with `options` (dropout_p, dropout_seed, dropout_offset) over B sequences of
/// Hq query heads: mask[((b * Hq + h) * Nq + i) * Nk + j] = 1 where P_ij of sequence b, query head h is kept,
/// 0 where it is dropped, i and j counted within the sequence (with Options::dropout_row0/col0: the sequence's
/// rows i + row0, columns j + col0; a dropout_col0 that is not a multiple of 64 is refused) (varlen: Nq, Nk the longest lengths; Hq must be
/// the call's). Bitwise the mask forward() and backward() apply on every backend (Philox-4x32-10, src/core/
/// philox.h; dropout_p = 0 gives all ones). `mask`: B * Hq * Nq * Nk contiguous bytes on `device`. Throws
/// Error naming the argument for a dropout_p outside [0, 1), negative sizes or a null mask, writing nothing.
/// On CUDA the call is asynchronous on `stream`.
void dropout_mask(std::uint8_t* mask, Device device, std::int64_t batch, std::int64_t hq, std::int64_t nq,
                  std::int64_t nk, const Options& options = {}, Stream stream = {});

/// Synchronizes and raises a pending device metadata violation (see Varlen: the asynchronous mode) now:
/// waits for `stream` on `device` (a null stream: cudaDeviceSynchronize, every stream of the device), then
/// throws the Error of Kind::invalid_argument naming cu_seqlens_q/k or max_seqlen_q/k that an earlier varlen
/// forward()/backward() on the device recorded, clearing it; returns when there is none. The same check
/// every CUDA forward()/backward() makes on entry, for a caller that wants the report at a point of its
/// choosing (before reading the outputs, at the end of a step). CPU devices: returns (CPU metadata is checked
/// before a call runs). Errors: a negative CUDA device index (Error naming device), a build without CUDA
/// (Kind::unsupported), a CUDA runtime error while synchronizing.
void check_errors(Device device, Stream stream = {});

/// FLOPs of a forward pass as counted by the FlashAttention papers: 4 * sum over rows of
/// (visible keys) * D * Hq. For square causal this is about half of 4 * B * Hq * N^2 * D.
/// Batched problems only (host arithmetic on shapes).
double forward_flops(std::int64_t batch, std::int64_t nq, std::int64_t nk, std::int64_t hq, std::int64_t d,
                     const Options& options);

}  // namespace flatattn
