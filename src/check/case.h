// One attention case of the checks: shapes, dtype, options and layout (Case), and its host tensors
// (CaseTensors: inputs random, outputs poisoned), shared by the tests and `flatattn check`.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "flatattn/attention.h"
#include "src/check/host_tensor.h"

namespace flatattn::check {

/// A case's sparse mask (include/flatattn/sparse.h; built by src/check/sparse_case.cc). Off when block_q = 0.
struct SparseCase {
  enum class Pattern : std::uint8_t {
    random,     ///< each block listed with probability `density`, full with probability `full_share`
    causal,     ///< FlexAttention's examples as a mask_mod (element predicate, top-left): j <= i
    sliding,    ///< causal with i - j <= window
    prefix_lm,  ///< j <= i or j < window (the prefix)
    document,   ///< 3 documents of unequal length: doc(i) == doc(j)
  };
  enum class Rule : std::uint8_t {
    band,          ///< partial blocks take the Options band (random pattern only)
    bits,          ///< partial blocks carry bits: the pattern's predicate, or random bits (`bit_density`)
    local_global,  ///< partial blocks take local + global (Options window, `globals`)
  };
  int block_q = 0, block_kv = 0;  ///< 0: no sparse mask
  Pattern pattern = Pattern::random;
  Rule rule = Rule::band;
  double density = 0.5;     ///< random: share of listed blocks (0: every row of blocks empty)
  double full_share = 0.5;  ///< random: share of listed blocks that are full (0: partial only, 1: full only)
  double bit_density = 0.6; ///< random bits: share of visible elements in a partial block
  int window = 16;          ///< sliding: window; prefix_lm: prefix length
  bool per_head = true;     ///< lists (B, Hq, ...) per sequence and head; false: (1, 1, ...) broadcast
  bool give_q = false;      ///< pass the transposed q lists too (else the library derives them)
  bool derive = false;      ///< local_global without block lists: the library derives them
  std::vector<std::int32_t> globals;  ///< local_global: global positions (the same for every sequence)
  [[nodiscard]] bool on() const { return block_q > 0 || derive; }
};

/// One attention case. q/k/v/out are (B, N, H, D) (varlen: (total N, H, D)) in `dtype`.
struct Case {
  std::int64_t batch = 1, nq = 1, nk = 1, hq = 1, hkv = 1, d = 64;  ///< B, Nq, Nk, Hq, Hkv, D
  DType dtype = DType::f32;
  Options options{};
  bool varlen = false;
  std::vector<std::int32_t> seqlens_q, seqlens_k;  ///< varlen: per-sequence lengths (size = batch)
  bool strided = false;     ///< q/k/v/out (and gradients) stored as (B, H, N, D) with 8 elements of padding
  double input_sd = 1.0;    ///< standard deviation of q and k (large values give large logits); v and dout: 1
  /// ALiBi slopes: 0 off, 1 shape (Hq), 2 shape (B, Hq). Values: BLOOM's 2^(-8 (h + 1) / Hq) times a
  /// random factor in [0.5, 1.5) per slope (alibi_scale scales them all).
  int alibi = 0;
  double alibi_scale = 1.0;
  /// Attention sinks (Hq): sink_h ~ sink_mean + N(0, 1) (a large mean: the sink takes most of each row).
  bool sinks = false;
  double sink_mean = 0.0;
  /// Additive bias (ForwardArgs::bias): off when bias_dims is empty, else which of (B, Hq, Nq) the bias has in
  /// full ("bhq": (B, Hq, Nq, Nk); "q": (1, 1, Nq, Nk); "bh": (B, Hq, 1, Nk); "": off; "-": (1, 1, 1, Nk)).
  /// Values ~ N(0, bias_sd^2), bias_masked of them -inf (keys hidden by the bias); dtype bias_dtype
  /// (f64: the case's dtype); bias_strided stores it (Bb, Mq, Hb, Nk)-major with padding.
  std::string bias_dims;
  DType bias_dtype = DType::f64;
  bool bias_strided = false;
  double bias_sd = 1.0;
  double bias_masked = 0.0;
  [[nodiscard]] bool has_bias() const { return !bias_dims.empty(); }
  SparseCase sparse;  ///< block-sparse lists / local + global (off by default)
  /// "f16 B2 Nq97 Nk97 Hq2 Hkv2 D64 causal-br ..." (every field that differs from the defaults).
  [[nodiscard]] std::string name() const;
};

/// Tensors of a case: inputs filled, outputs poisoned. lse is f32 (B, Hq, Nq) (varlen: (Hq, total Nq));
/// cu_q, cu_k are i32 (B + 1) cumulative lengths (varlen only).
struct CaseTensors {
  Case c;  ///< for varlen: batch = number of sequences, nq/nk = the longest sequence
  HostTensor q, k, v, out, lse, dout, dq, dk, dv, cu_q, cu_k;
  HostTensor alibi, sinks;  ///< f32 ALiBi slopes ((Hq) or (B, Hq)) and sinks (Hq), when the case has them
  HostTensor dsinks;        ///< f32 (Hq), poisoned: the backward's sinks gradient (with_backward and sinks)
  HostTensor bias, dbias;   ///< the additive bias (Bb, Hb, Mq, Nk) and its gradient (poisoned, with_backward)
  /// Sparse mask tensors (c.sparse): i32 kv / q lists (partial, full), bits and their offsets, globals.
  HostTensor kv_num, kv_idx, fkv_num, fkv_idx, q_num, q_idx, fq_num, fq_idx, mask_bits, bit_offsets, globals;
  [[nodiscard]] ForwardArgs forward_args(Device device = Device::cpu()) const;
  [[nodiscard]] BackwardArgs backward_args(Device device = Device::cpu()) const;
  [[nodiscard]] std::optional<Varlen> varlen(Device device = Device::cpu()) const;
};

/// Builds the tensors of a case: q, k ~ N(0, input_sd^2), v ~ N(0, 1) from `seed` (HostTensor::fill_normal
/// with seed ^ 1, ^ 2, ^ 3); out and lse poisoned. with_backward also allocates dout ~ N(0, 1) (seed ^ 4) and
/// poisoned dq/dk/dv (and dsinks with sinks). ALiBi slopes and sinks come from seed ^ 5 and seed ^ 6. The
/// same seed gives the same tensors in every process.
CaseTensors make_case(const Case& c, std::uint64_t seed, bool with_backward = false);
/// The same with a seed drawn from rng (the tests' per-run generators).
CaseTensors make_case(const Case& c, std::mt19937_64& rng, bool with_backward = false);

/// Random case generator: fresh shapes and features for sweeps (dims up to max_n).
Case random_case(std::mt19937_64& rng, DType dtype, std::int64_t max_n = 300);

/// The differential fuzz's generator (`flatattn check --fuzz`): random_case plus the features the test sweeps
/// leave to their own cases -- ALiBi slopes and attention sinks, a negative softmax scale, large logits (q, k ~ N(0, 100^2); f16/bf16 without softcap
/// for now, see case.cc), the deterministic backward, a forced dataflow (auto, Flash or FLAT), head dims that are not
/// multiples of 8 and dropout (drawn last: a seed's other draws are unchanged). A new feature joins here
/// and in features.cc.
Case fuzz_case(std::mt19937_64& rng, DType dtype, std::int64_t max_n = 300);

/// A seed that differs per run, or FLATATTN_SEED when set (tests report it so a failure can be replayed).
std::uint64_t fresh_seed();

}  // namespace flatattn::check
