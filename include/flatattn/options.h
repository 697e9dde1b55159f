// flatattn: attention options (the semantics every backend shares).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace flatattn {

/// Which corner the causal diagonal (and the sliding window) is aligned to when Nq != Nk.
/// bottom_right: key j is visible to query i when j <= i + (Nk - Nq)   (FlashAttention >= 2.1)
/// top_left:     key j is visible to query i when j <= i               (PyTorch SDPA is_causal)
enum class CausalAlign : std::uint8_t { bottom_right, top_left };

/// How the forward pass is tiled.
/// flash: block tiling of Q and K/V with online softmax (Dao et al., FlashAttention 1/2).
/// flat:  row tiling; a tile of R query rows computes its whole R x Nk logit block and an exact
///        full-row softmax, output stationary (Kao et al., FLAT, ASPLOS'23, Sec. 4). On CUDA the
///        whole key row lives on chip: Nk <= 128..256 by head dim (policy/tile_size.h); longer rows
///        throw Error of Kind::unsupported naming the limit.
/// automatic: the planner picks (src/model); never a dataflow that cannot serve the shape.
enum class Dataflow : std::uint8_t { automatic, flash, flat };

constexpr std::string_view name(Dataflow d) {
  switch (d) {
    case Dataflow::automatic: return "auto";
    case Dataflow::flash: return "flash";
    case Dataflow::flat: return "flat";
  }
  return "?";
}

/// Sliding window relative to the (aligned) diagonal: query i sees keys
/// diag(i) - left ... diag(i) + right, where diag(i) = i + (Nk - Nq) for bottom-right alignment.
/// -1 means unbounded on that side.
struct Window {
  std::int64_t left = -1;
  std::int64_t right = -1;
};

/// The products of f32 inputs (Options::fp32_matmul), after torch.set_float32_matmul_precision:
/// exact: fp32 products, fp32 accumulation ("highest"); the default.
/// bf16:  the CPU engine may multiply f32 inputs as bf16 on the matrix units ("medium"): see Options::fp32_matmul.
enum class Fp32Matmul : std::uint8_t { exact, bf16 };

constexpr std::string_view name(Fp32Matmul m) { return m == Fp32Matmul::bf16 ? "bf16" : "exact"; }

/// Options of forward() and backward(). Defaults reproduce FlashAttention 2.
struct Options {
  /// Multiplies QK^T before the softmax. Default 1/sqrt(D).
  std::optional<float> softmax_scale;
  /// Causal mask. With a window, window.right must be -1 or 0 (causal implies 0).
  bool causal = false;
  CausalAlign causal_align = CausalAlign::bottom_right;
  Window window{};
  /// Logit soft-capping (Gemma 2): s = softcap * tanh(scale * q.k / softcap). 0 disables.
  float softcap = 0.0f;
  /// Attention dropout (Srivastava et al. 2014, fused as in FlashAttention, Dao et al. 2022 Sec. 3.1): each
  /// normalized probability P_ij is kept with probability 1 - dropout_p and scaled by 1 / (1 - dropout_p), or
  /// set to 0, before P V; the LSE is that of the undropped P. In [0, 1) (else Error naming dropout_p); 0 disables.
  /// The keep decision is a pure function of (dropout_seed, dropout_offset, sequence b, query head h, row i, key
  /// column j within the sequence), Philox-4x32-10 (src/core/philox.h), bitwise the same on the CPU and every CUDA
  /// kernel; dropout_p is quantized to 1/256 for the decision (an 8-bit threshold, as FlashAttention-2: kept
  /// with probability 1 - round(256 p) / 256; the kept entries are scaled by 1 / (1 - dropout_p) unquantized). backward() must get the forward's three values:
  /// it regenerates the same mask. dropout_mask() materializes it. There is no hidden generator state: the caller
  /// chooses (seed, offset) (the Python API draws them from torch's generator, as FlashAttention-2 does).
  float dropout_p = 0.0f;
  std::uint64_t dropout_seed = 0;    ///< the Philox key
  std::uint64_t dropout_offset = 0;  ///< added to the counter: advance it between calls that reuse a seed
  /// For context parallelism: the mask of a sub-block equals the mask of the whole sequence at those positions.
  /// The keep decision of the call's row i, key column j is that of row i + dropout_row0, column j + dropout_col0
  /// (of every sequence of the batch; varlen: within each sequence). Both in [0, 2^31) with row0 + Nq and
  /// col0 + Nk <= 2^31; dropout_col0 a multiple of 64 (kDropoutColAlign: a Philox call serves 16 keys of a 64-key
  /// group, philox.h).
  /// Else Error naming the field. Default 0: the call's own sequence. backward() must get the forward's values.
  std::int64_t dropout_row0 = 0;
  std::int64_t dropout_col0 = 0;
  /// For context parallelism across documents and heads: the call's sequence b and query head h draw the mask of
  /// sequence b + dropout_batch0 and query head h + dropout_head0 of a stream of dropout_heads query heads (0: the
  /// call's Hq), i.e. the counter's third word is (b + batch0) * heads + h + head0 (src/core/philox.h). Ring
  /// attention over packed documents passes the document's index (varlen numbers the stream per document);
  /// Ulysses passes its first head and the full Hq. All >= 0, head0 + Hq <= heads (heads given), (batch0 + B) *
  /// heads <= 2^31; else Error naming the field. Default 0: the call's own numbering. backward() must get the
  /// forward's values.
  std::int64_t dropout_batch0 = 0;
  std::int64_t dropout_head0 = 0;
  std::int64_t dropout_heads = 0;
  /// forward(): write the log-sum-exp of each logit row (natural log, fp32) into ForwardArgs::lse.
  /// When true the lse view is required; when false it must be absent.
  bool return_lse = false;
  /// Forward dataflow (see Dataflow). Forcing one that cannot serve the problem is an error.
  Dataflow dataflow = Dataflow::automatic;
  /// CPU worker threads; 0 = all hardware threads. Ignored on CUDA.
  int num_threads = 0;
  /// backward(): bitwise-reproducible dQ/dK/dV across runs, streams and launches. CPU: always so.
  /// CUDA: each dQ row is summed over key blocks in 32-bit fixed point (integer reductions, exact in
  /// any order; two columns per 64-bit reduction, as many reductions as the default mode) with a unit
  /// scaled from a bound B_i of the row computed from the inputs (Demmel and Nguyen 2013;
  /// src/cuda/common/repro_dq.cuh). The result is within 2^(k - 29) B_i of the exact sum for 2^k key
  /// blocks (2^-23 B_i at N = 8k with 128-key blocks): below the bf16/fp16 rounding of every element
  /// above 2^(k - 20) B_i; smaller elements of a row keep that absolute error. Same dQ workspace as the
  /// default mode (Hq * B * Nq * D * 4 bytes) plus a float per row, and one pass over K and V. A row
  /// whose bound or terms are not finite (NaN/Inf inputs, an LSE that does not belong to Q and K) comes
  /// out NaN, as in the default mode.
  bool deterministic = false;
  /// Opt-in to bf16 products for f32 inputs (CPU engine only; PyTorch's set_float32_matmul_precision("medium")).
  /// exact (default): f32 inputs are multiplied in fp32. bf16: forward() and backward() round the f32 Q, K, V
  /// (and dO) to bf16 (nearest even) as they pack them for the AMX tiles (or AVX512-BF16 where AMX is absent),
  /// accumulate every product in fp32 and keep the softmax, the LSE and the outputs (O, dQ, dK, dV) in fp32;
  /// P and dS are rounded to bf16 as product operands, as for bf16 inputs. Precision: that of a bf16 call on
  /// the rounded inputs (each input within 2^-8 relative, bf16's unit roundoff; about 1e-3 relative on O), not fp32's
  /// ~1e-5; tests judge it by the correctness rule for bf16 inputs against the fp64 attention of the rounded
  /// inputs (docs/design.md, tests/cpu/test_fp32_matmul.cc). The Report's kernel name ends in "_amx" or
  /// "_avx512bf16" when it was served. bf16 inputs are unaffected (their products are bf16 already).
  /// Errors (flatattn::Error naming fp32_matmul): f16 inputs (no bf16 rounding of f16 is offered); a CPU
  /// with neither AMX-BF16 nor AVX512-BF16 usable (no silent fp32 fallback); CUDA tensors (the option is not
  /// served there yet); forward_kvcache(). FLATATTN_CPU_MATMUL (src/cpu/amx/amx.h) still overrides the path:
  /// "fp32" runs the exact fp32 products even when bf16 is asked (a debugging override; the kernel name says so).
  Fp32Matmul fp32_matmul = Fp32Matmul::exact;
};

}  // namespace flatattn
