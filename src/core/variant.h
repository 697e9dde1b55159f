// The attention-variant seam: every feature that acts on a logit, a probability or the set of visible
// keys is a hook of one variant type, and every backend (the CPU engine and each CUDA family, forward and
// backward) calls the same hooks. Host+device: included by src/cpu and by the CUDA kernels.
//
// A variant is Variant<Score, Prob>:
//   Score  the score transform x = score(s) of each raw logit s (s = q.k as the backend computes it, see
//          VariantData) with its derivative dscore = dx / d(scale q.k) for the backward (of x, or of the
//          value the backward keeps instead: kCarries, softcap), and the
//          element's coordinates (ScoreAt: batch, query head, kv head, query row, key column);
//   Prob   the hook on each probability between the softmax and P V, applied again after the recompute
//          of P in the backward (NoProb, or DropoutProb);
//   mask   the visible-key rule and the block iteration: the band of src/core/mask.h (causal in both
//          alignments, window, ragged ends) with contiguous block ranges, for every variant today; its
//          device form and iterators are src/cuda/common/mask.cuh, its CPU form src/cpu/tile.h.
// A hook that is off (kActive = false) compiles to nothing: the kernels test it with `if constexpr`.
//
// The curated list of variants (VariantId) is the registry key's last field: the kernel generator
// (tools/gen_instances.py) builds an instance per (family, dataflow, dtype, D, variant) for the variants
// it lists, each named after the workload that needs it; FLATATTN_VARIANTS narrows the build.
// docs/variants.md walks a feature from Options to a kernel and lists what a new variant touches.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "src/core/half.h"
#include "src/core/mask.h"  // FLATATTN_HD
#include "src/core/philox.h"

namespace flatattn {

/// The built variants, in registry order. The names are the instance-name suffixes (plain: none).
enum class VariantId : std::uint8_t {
  plain = 0,    ///< dense softmax attention: every model
  softcap = 1,  ///< logit soft-capping x = c tanh(s / c): Gemma 2, Grok-1
  alibi = 2,    ///< ALiBi linear distance bias x = scale s - slope |i + Nk - Nq - j|: BLOOM, MPT, Baichuan
  dropout = 3,  ///< dropout on P (training BERT/ViT/T5-style models)
  dropout_softcap = 4,  ///< dropout and softcap together: Gemma 2 training
  bias = 5,     ///< additive bias tensor with gradient x = scale s + bias_bhij: T5 relative positions, AlphaFold, Swin, SDPA attn_mask
};
inline constexpr int kVariantCount = 6;

constexpr const char* variant_name(VariantId id) {
  switch (id) {
    case VariantId::plain: return "plain";
    case VariantId::softcap: return "softcap";
    case VariantId::alibi: return "alibi";
    case VariantId::dropout: return "dropout";
    case VariantId::dropout_softcap: return "dropout_softcap";
    case VariantId::bias: return "bias";
  }
  return "?";
}

/// The feature arguments of one call, validated (src/core/validate.cc fills Problem::variant).
struct VariantArgs {
  float softcap = 0.f;  ///< c of x = c tanh(s / c), in logit units; 0: off
  /// ALiBi slopes (fp32, natural-log logit units per key of distance) on the call's device: slope of
  /// (sequence b, query head h) at alibi_slopes[b * alibi_stride_b + h]; null: off. Not with softcap or dropout.
  const float* alibi_slopes = nullptr;
  std::int64_t alibi_stride_b = 0;  ///< 0 for slopes of shape (Hq)
  float dropout_p = 0.f;  ///< dropout probability on P, in [0, 1); 0: off (src/core/philox.h: the keep rule)
  std::uint64_t dropout_seed = 0, dropout_offset = 0;  ///< the Philox key and counter offset of the call
  std::int64_t dropout_hq = 1;  ///< Hq of the call: the dropout counter's third word is b * Hq + h
  std::int64_t dropout_row0 = 0, dropout_col0 = 0;  ///< Options::dropout_row0/col0 (validated: col0 % kDropoutColAlign == 0)
  /// Options::dropout_batch0 * dropout_heads + dropout_head0 (dropout_hq is then the stream's dropout_heads).
  std::int64_t dropout_bh0 = 0;
  /// Additive bias (f32/f16/bf16, bias_dtype) on the call's device: the logit of (sequence b, query head h,
  /// row i, key j) gains bias[b * bias_sb + h * bias_sh + i * bias_si + j] (stride 0: a broadcast dim); null: off.
  /// bias_nq, bias_nk: the extents the kernels clamp i and j to (padded tile rows and keys read in bounds).
  /// Not with softcap, ALiBi or dropout (validation refuses them).
  const void* bias = nullptr;
  DType bias_dtype = DType::f32;
  std::int64_t bias_sb = 0, bias_sh = 0, bias_si = 0;
  std::int64_t bias_nq = 0, bias_nk = 0;
};

/// Which variant serves a call (validation refuses ALiBi with softcap or dropout, so ALiBi comes alone).
inline VariantId variant_of(const VariantArgs& a) {
  if (a.bias != nullptr) return VariantId::bias;
  if (a.alibi_slopes != nullptr) return VariantId::alibi;
  if (a.dropout_p > 0.f) return a.softcap > 0.f ? VariantId::dropout_softcap : VariantId::dropout;
  return a.softcap > 0.f ? VariantId::softcap : VariantId::plain;
}

/// Per-call data of the hooks: one plain struct that each backend carries in its parameters.
struct VariantData {
  float pre = 1.f;       ///< the score's input factor (plain: the whole scale, when the backend does not fold it)
  float post = 1.f;      ///< the score's output factor
  float inv_post = 0.f;  ///< 1 / post (the derivative's)
  int alibi_stride_b = 0;              ///< ALiBi: the slopes' batch stride (0: one slope per head)
  const float* alibi_slopes = nullptr;  ///< ALiBi: the slopes on the backend's device (natural units)
  // Dropout (DropoutProb; zero otherwise): the Philox stream of src/core/philox.h and the kept entries' scale.
  std::uint32_t drop_k0 = 0, drop_k1 = 0, drop_c3 = 0, drop_threshold = 0;
  std::int32_t drop_hq = 1;
  float drop_scale = 1.f;  ///< 1 / (1 - p)
  // Additive bias (BiasScore; zero otherwise): VariantArgs' bias fields.
  const void* bias = nullptr;
  std::int64_t bias_sb = 0, bias_sh = 0, bias_si = 0;
  int bias_nq = 0, bias_nk = 0;  ///< clamp extents: i < bias_nq, j < bias_nk
  int bias_dtype = 0;            ///< DType as an int: 0 f32, 1 f16, 2 bf16
  // Dropout's position offsets (Options::dropout_row0/col0; last, so the fields above keep their offsets).
  std::int32_t drop_row0 = 0, drop_col0 = 0;
  std::int32_t drop_bh0 = 0;  ///< VariantArgs::dropout_bh0: the counter's third word is b * drop_hq + h + drop_bh0
};

/// The data for a backend whose raw logit is s = raw_scale * q.k (CUDA: raw_scale = 1 and the softmax
/// scale goes into `scale`; the CPU engine folds the scale into Q: scale = 1 after packing) and whose
/// softmax exponent is in `unit`s (CUDA: log2 e, exp2; CPU: 1, exp). The score then gives
/// plain x = unit scale s and softcap x = unit c tanh(scale s / c), both in the backend's exponent units.
inline VariantData make_variant_data(const VariantArgs& a, float scale, float unit) {
  VariantData v;
  if (variant_of(a) == VariantId::bias) {  // first, as variant_of decides (validation refuses it with softcap)
    v.pre = scale * unit;  // x = unit (scale s + bias)
    v.post = unit;
    v.bias = a.bias;
    v.bias_sb = a.bias_sb, v.bias_sh = a.bias_sh, v.bias_si = a.bias_si;
    v.bias_nq = static_cast<int>(a.bias_nq), v.bias_nk = static_cast<int>(a.bias_nk);
    v.bias_dtype = static_cast<int>(a.bias_dtype);
  } else if (a.softcap > 0.f) {
    v.pre = scale / a.softcap;
    v.post = a.softcap * unit;
  } else if (variant_of(a) == VariantId::alibi) {
    v.pre = scale * unit;  // x = unit (scale s - slope |distance|)
    v.post = unit;
    v.alibi_stride_b = static_cast<int>(a.alibi_stride_b);
    v.alibi_slopes = a.alibi_slopes;
  } else {
    v.pre = scale * unit;
    v.post = 1.f;
  }
  v.inv_post = 1.f / v.post;
  if (a.dropout_p > 0.f) {
    const DropoutStream ds = dropout_stream(a.dropout_seed, a.dropout_offset, a.dropout_p, a.dropout_hq);
    v.drop_k0 = ds.k0, v.drop_k1 = ds.k1, v.drop_c3 = ds.c3, v.drop_threshold = ds.threshold, v.drop_hq = ds.hq;
    v.drop_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(a.dropout_p)));
    v.drop_row0 = static_cast<std::int32_t>(a.dropout_row0), v.drop_col0 = static_cast<std::int32_t>(a.dropout_col0);
    v.drop_bh0 = static_cast<std::int32_t>(a.dropout_bh0);
  }
  return v;
}

/// Coordinates of one score element: sequence b, query head h, kv head hk, query row i and key column j
/// within the sequence. Backends that apply a hook to a vector of consecutive keys pass the first key's j.
/// diag = Nk - Nq of the sequence (the bottom-right diagonal's offset, whatever the mask's alignment); the
/// kernels fill it only for a score that reads it (needs_lengths<Score>: ALiBi), so the other variants'
/// code does not change (filling it for every variant moved the sm80 backward's SASS, docs/variants.md).
struct ScoreAt {
  int b = 0, h = 0, hk = 0, i = 0, j = 0;
  int diag = 0;
};

/// The coordinates of a score with a split form (has_split below) on the CUDA kernels: ScoreAt plus head, the
/// score's per-(b, h) constant (ALiBi: the slope in the backend's units), filled once per head outside the main
/// loops by with_lengths(at, nq, nk, v). A separate type, so that ScoreAt and the other variants' code stay as they
/// were (a field in ScoreAt itself moved the plain sm80 backward's SASS by 8 instructions).
struct SplitAt : ScoreAt {
  float head = 0.f;
};

/// Whether a score hook reads ScoreAt::diag (a score type opts in with `kNeedsLengths = true`).
template <class Score>
constexpr bool needs_lengths_of() {
  if constexpr (requires { Score::kNeedsLengths; }) {
    return Score::kNeedsLengths;
  } else {
    return false;
  }
}
template <class Score>
inline constexpr bool needs_lengths = needs_lengths_of<Score>();

/// at with diag = nk - nq when the score reads it (else unchanged: the field stays a dead 0).
template <class Score>
FLATATTN_HD ScoreAt with_lengths(ScoreAt at, int nq, int nk) {
  if constexpr (needs_lengths<Score>) at.diag = nk - nq;
  return at;
}

/// Whether a score has the split form that the CUDA kernels use on their accumulator tiles (a score type opts in
/// with `kSplit = true`): the same x as score<M>, computed from three parts (AlibiScore shows the shape):
///   head(v, b, h)             the per-(b, h) constant (SplitAt::head), once per head before the main loop;
///   row_term(at)              one float per thread and tile, for its first element (at.i, at.j);
///   split<kFlip>(s, v, at, rt, di, dj)
///                             x of the thread's element (at.i + di, at.j + dj) from that term rt, with di, dj
///                             compile-time constants once the kernels' loops are unrolled (src/cuda/common/score.cuh);
///   flip(at)                  which of the two forms serves the head (ALiBi: a negative slope), tested once per tile.
/// So the per-element work is what depends on both the row and the column, the rest is hoisted (issue 15: ALiBi
/// cost 1.19-1.34x the plain forward when every element loaded the slope and converted its indices).
template <class Score>
constexpr bool has_split_of() {
  if constexpr (requires { Score::kSplit; }) {
    return Score::kSplit;
  } else {
    return false;
  }
}
template <class Score>
inline constexpr bool has_split = has_split_of<Score>();

/// The kernels' coordinates type for a score: SplitAt for a score with a split form, else ScoreAt.
template <class Score>
using ScoreAtOf = std::conditional_t<has_split<Score>, SplitAt, ScoreAt>;

/// with_lengths, plus SplitAt::head for a score with a split form (one load per call, outside the loops); the
/// ScoreAt of with_lengths for the others.
template <class Score>
FLATATTN_HD ScoreAtOf<Score> with_lengths(ScoreAt at, int nq, int nk, const VariantData& v) {
  if constexpr (has_split<Score>) {
    SplitAt r;
    static_cast<ScoreAt&>(r) = with_lengths<Score>(at, nq, nk);
    r.head = Score::head(v, at.b, at.h);
    return r;
  } else {
    return with_lengths<Score>(at, nq, nk);
  }
}

/// The scalar math of the hooks on one float, host and device (the CUDA kernels, the CPU's scalar paths).
struct FloatMath {
  FLATATTN_HD static float tanh(float x) { return tanhf(x); }
  FLATATTN_HD static float max(float a, float b) { return fmaxf(a, b); }
  FLATATTN_HD static float abs(float x) { return fabsf(x); }
  /// |a| with the sign of b.
  FLATATTN_HD static float copysign(float a, float b) { return copysignf(a, b); }
  /// e^x (device: the hardware exp2, a few ulp; x = -inf gives 0).
  FLATATTN_HD static float exp(float x) {
#ifdef __CUDA_ARCH__
    return __expf(x);
#else
    return expf(x);
#endif
  }
  /// a / b for b in [1, 2] (device: the approximate division, 2 ulp there).
  FLATATTN_HD static float div(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdividef(a, b);
#else
    return a / b;
#endif
  }
  /// The key index of each lane of a value that starts at key j (one lane here).
  FLATATTN_HD static float keys(int j) { return static_cast<float>(j); }
  /// f(key) for each lane's key of a value that starts at key j (one lane here).
  template <class F>
  FLATATTN_HD static float per_key(int j, F&& f) {
    return f(j);
  }
};

// ---- score hooks -------------------------------------------------------------------------------
// score<M>(s, v, at) and dscore<M>(x, v): M is the backend's math (M::tanh, M::max, M::abs, M::copysign,
// M::exp, M::div on its value type T: float on the GPU, a SIMD vector on the CPU; M::keys(at.j) gives each
// lane's key index).
//
// The backward keeps one value per element between the recompute of P and dS: x itself, unless the score
// sets kCarries. Then it keeps c = carry(s) instead, from which x = from_carry(c) and dscore(c) follow
// (a derivative that x alone determines only with cancellation: softcap). The mask writes -inf into the
// kept value, so from_carry(-inf) must be -inf and dscore(-inf) finite. carry_score / score_of_carry below
// give every backend one call for both kinds of score.

/// No transform beyond the scale, which a backend applies only when it does not fold it into the softmax
/// (CUDA with a positive scale folds it into the exp2 FFMA; kActive = false means exactly that).
struct PlainScore {
  static constexpr bool kActive = false;
  template <class M, class T>
  FLATATTN_HD static T score(T s, const VariantData& v, const ScoreAt&) {
    return v.pre * s;
  }
  template <class M, class T>
  FLATATTN_HD static T dscore(T, const VariantData&) {
    return T{} + 1.f;
  }
};

/// Logit soft-capping (Gemma 2, Team Gemma 2024 §2): x = c tanh(s / c) (in the backend's units: post tanh(u),
/// u = pre s), dx/du = 1 - tanh^2 u = sech^2 u. Formed as 1 - (x / post)^2 that derivative cancels where
/// |u| >> 1: tanh u rounds to +-1 in fp32 for |u| > 9 (and loses all but a few bits of 1 - |tanh u| from
/// |u| ~ 5), while sech^2 u ~ 4 e^-2|u| still weighs the element's dS (issue 20, item 6). So the backward
/// keeps k = sign(u) (1 - |tanh u|) = sign(u) 2 e / (1 + e), e = e^-2|u| (one exp, one division in (1, 2]):
///   x = post sign(k) (1 - |k|),   dx/du = (1 - |t|)(1 + |t|) = |k| (2 - |k|) = 4 e / (1 + e)^2,
/// both without cancellation (relative error of the derivative: a few ulp for every u; x: a few ulp of post,
/// absolute, as tanh's own rounding near +-1). A masked element's k = -inf gives x = -inf and dx/du = 0.
/// The forward keeps score() (tanh): the backward's recomputed x may differ from it by a few ulp of post.
struct SoftcapScore {
  static constexpr bool kActive = true;
  static constexpr bool kCarries = true;
  template <class M, class T>
  FLATATTN_HD static T score(T s, const VariantData& v, const ScoreAt&) {
    return v.post * M::tanh(v.pre * s);
  }
  /// k = sign(u) (1 - |tanh u|), u = pre s.
  template <class M, class T>
  FLATATTN_HD static T carry(T s, const VariantData& v, const ScoreAt&) {
    const T u = v.pre * s;
    const T e = M::exp(-2.f * M::abs(u));
    return M::copysign(M::div(e + e, 1.f + e), u);
  }
  /// x = post sign(k) (1 - |k|) (k = -inf: -inf).
  template <class M, class T>
  FLATATTN_HD static T from_carry(T k, const VariantData& v) {
    return v.post * M::copysign(1.f - M::abs(k), k);
  }
  /// dx/du = |k| (2 - |k|) of the kept k (k = -inf: 0).
  template <class M, class T>
  FLATATTN_HD static T dscore(T k, const VariantData&) {
    const T a = M::abs(k);
    return M::max(a * (2.f - a), T{});
  }
};

/// ALiBi (Press et al., "Train Short, Test Long", ICLR 2022, Sec. 3): a linear bias on the scaled logit,
/// x = scale s - slope_{b,h} |i + Nk - Nq - j| (in the backend's units: pre s - post slope |i + diag - j|),
/// with the distance to the bottom-right diagonal for causal and non-causal alike and whatever the causal
/// alignment (FlashAttention-2's formula; it has no top-left alignment). dx/d(scale s) = 1. FlashAttention-2's
/// causal kernels add + slope j instead: the same softmax, so the same O and gradients, but an LSE larger
/// by slope (i + Nk - Nq) than ours (docs/variants.md).
struct AlibiScore {
  static constexpr bool kActive = true;
  static constexpr bool kNeedsLengths = true;
  static constexpr bool kSplit = true;
  template <class M, class T>
  FLATATTN_HD static T score(T s, const VariantData& v, const ScoreAt& at) {
    const float slope = v.post * v.alibi_slopes[at.b * v.alibi_stride_b + at.h];
    const T dist = static_cast<float>(at.i + at.diag) - M::keys(at.j);
    return v.pre * s - slope * M::max(dist, -dist);
  }
  template <class M, class T>
  FLATATTN_HD static T dscore(T, const VariantData&) {
    return T{} + 1.f;
  }
  // The split form (has_split): head = post slope; the row term is the signed scaled distance
  // r = head (i + diag - j) of the thread's first element of the tile (the integer distance is exact, one rounding
  // of the product); an element di, dj further is pre s - |r + head (di - dj)|: two FFMAs (the immediate di - dj and
  // |.| as operand modifiers), the first shared by the elements of equal di - dj (a thread's row + 8 at column + 8).
  // A negative slope (not BLOOM's, but allowed) takes + |.| instead (kFlip, flip()). It differs from score() by the
  // rounding of the scaled distance: |error| <= 2^-23 |head| (|dist| + |di - dj|), a few ulp of the bias for offsets
  // of a tile's size.
  FLATATTN_HD static float head(const VariantData& v, int b, int h) {
    return v.post * v.alibi_slopes[b * v.alibi_stride_b + h];
  }
  FLATATTN_HD static float row_term(const SplitAt& at) { return at.head * static_cast<float>(at.i + at.diag - at.j); }
  FLATATTN_HD static bool flip(const SplitAt& at) { return at.head < 0.f; }
  template <bool kFlip>
  FLATATTN_HD static float split(float s, const VariantData& v, const SplitAt& at, float rt, int di, int dj) {
    const float d = fabsf(fmaf(at.head, static_cast<float>(di - dj), rt));  // |head| |dist|
    return fmaf(v.pre, s, kFlip ? d : -d);
  }
};

/// Whether a score keeps carry(s) instead of x in the backward (a score type opts in with `kCarries = true`).
template <class Score>
constexpr bool carries_of() {
  if constexpr (requires { Score::kCarries; }) {
    return Score::kCarries;
  } else {
    return false;
  }
}
template <class Score>
inline constexpr bool carries = carries_of<Score>();

/// The backward's kept value of raw logit s: carry(s), or x = score(s) for a score that keeps x.
template <class Score, class M, class T>
FLATATTN_HD T carry_score(T s, const VariantData& v, const ScoreAt& at) {
  if constexpr (carries<Score>) {
    return Score::template carry<M>(s, v, at);
  } else {
    return Score::template score<M>(s, v, at);
  }
}

/// x from the backward's kept value (itself for a score that keeps x).
template <class Score, class M, class T>
FLATATTN_HD T score_of_carry(T c, const VariantData& v) {
  if constexpr (carries<Score>) {
    return Score::template from_carry<M>(c, v);
  } else {
    return c;
  }
}

/// One bias element as float, host and device: f32, f16 or bf16 storage (dtype as in VariantData::bias_dtype).
FLATATTN_HD float load_bias(const void* base, int dtype, std::int64_t off) {
  if (dtype == 0) return static_cast<const float*>(base)[off];
  const std::uint16_t h = static_cast<const std::uint16_t*>(base)[off];
#ifdef __CUDA_ARCH__
  if (dtype == 2) return __uint_as_float(static_cast<unsigned>(h) << 16);
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
#else
  return dtype == 2 ? bf16_to_float(h) : f16_to_float(h);
#endif
}

/// The bias of (sequence b, query head h, row i, key j), in natural-log logit units; i and j are clamped to the
/// bias's extents, so the padded rows and keys of a tile (masked or discarded later) read in bounds.
FLATATTN_HD float bias_at(const VariantData& v, int b, int h, int i, int j) {
  i = i < v.bias_nq - 1 ? i : v.bias_nq - 1;
  j = j < v.bias_nk - 1 ? j : v.bias_nk - 1;
#ifdef __CUDA_ARCH__
  // The offset within the (b, h) slice in 32 bits (src/cuda/check_args.cc bounds it below 2^32): 64-bit products
  // per element made the bias instances spill (sm80 D = 128 forward: 188 -> 48 bytes of spill stores).
  const unsigned in_slice = static_cast<unsigned>(i) * static_cast<unsigned>(v.bias_si) + static_cast<unsigned>(j);
  return load_bias(v.bias, v.bias_dtype, (b * v.bias_sb + h * v.bias_sh) + in_slice);
#else
  return load_bias(v.bias, v.bias_dtype, b * v.bias_sb + h * v.bias_sh + i * v.bias_si + j);
#endif
}

/// Additive bias with gradient (T5's relative position bias, Raffel et al. 2020 Sec. 2.1; AlphaFold's pair bias;
/// Swin's relative bias; PyTorch SDPA's float attn_mask): x = scale s + bias_{b,h,i,j}, after the scale and
/// before the mask (in the backend's units: pre s + post bias). dx/d(scale s) = 1, and dx/d(bias) = 1, so the
/// bias's gradient is the logit's, dS (the backward kernels write it: dbias).
struct BiasScore {
  static constexpr bool kActive = true;
  static constexpr bool kBias = true;
  template <class M, class T>
  FLATATTN_HD static T score(T s, const VariantData& v, const ScoreAt& at) {
    return v.pre * s + v.post * M::per_key(at.j, [&](int j) { return bias_at(v, at.b, at.h, at.i, j); });
  }
  template <class M, class T>
  FLATATTN_HD static T dscore(T, const VariantData&) {
    return T{} + 1.f;
  }
};

/// Whether a score hook reads a bias tensor whose gradient the backward writes (`kBias = true`).
template <class Score>
constexpr bool has_bias_of() {
  if constexpr (requires { Score::kBias; }) {
    return Score::kBias;
  } else {
    return false;
  }
}
template <class Score>
inline constexpr bool has_bias = has_bias_of<Score>();

// ---- probability hooks -------------------------------------------------------------------------

/// P unchanged.
struct NoProb {
  static constexpr bool kActive = false;
  static constexpr bool kDropout = false;
  template <class M, class T>
  FLATATTN_HD static T prob(T p, const VariantData&, const ScoreAt&) {
    return p;
  }
};

/// Dropout on the normalized probabilities before P V (Srivastava et al. 2014; fused as in FlashAttention,
/// Dao et al. 2022, Sec. 3.1 and Alg. 2): P_ij * Z_ij / (1 - p), Z_ij = dropout_keep(...) of src/core/philox.h,
/// a pure function of (seed, offset, b, h, i, j). The row sum l and the LSE are those of the undropped P.
/// The backward (FlashAttention Alg. 4) regenerates Z: dV = Pd^T dO with Pd = P Z / (1 - p), dP = (dO V^T) Z / (1 - p),
/// D_i = rowsum(dO o O) = sum_j P_ij dP_ij, dS = P (dP - D_i) (times the score's derivative).
/// factor(): the element's multiplier, 0 (dropped) or 1 / (1 - p). The CUDA kernels call block() once per 16
/// elements of a row (src/cuda/common/score.cuh; the key-major sm90 backward through shared memory) and read
/// byte k of it with keep_byte (k compile-time there); prob<M> is the per-element form of the seam.
struct DropoutProb {
  static constexpr bool kActive = true;
  static constexpr bool kDropout = true;
  FLATATTN_HD static Philox4 block(const VariantData& v, int b, int h, int i, int j) {
    return dropout_block(v.drop_k0, v.drop_k1, v.drop_c3, v.drop_hq, b, h + v.drop_bh0, i + v.drop_row0, j + v.drop_col0);
  }
  FLATATTN_HD static bool keep(const Philox4& o, int j, const VariantData& v) {
    return dropout_byte(o, j) >= v.drop_threshold;
  }
  /// Whether the element that reads byte k (0..15) of call o is kept.
  FLATATTN_HD static bool keep_byte(const Philox4& o, int k, const VariantData& v) {
    return dropout_byte_at(o, k) >= v.drop_threshold;
  }
  /// The keep decisions of the 16 elements of call o: bit k for the element that reads byte k.
  FLATATTN_HD static std::uint32_t keep_bits(const Philox4& o, const VariantData& v) {
    return dropout_keep_bits(o, v.drop_threshold);
  }
  FLATATTN_HD static float factor(const VariantData& v, int b, int h, int i, int j) {
    return keep(block(v, b, h, i, j), j, v) ? v.drop_scale : 0.f;
  }
  template <class M, class T>
  FLATATTN_HD static T prob(T p, const VariantData& v, const ScoreAt& at) {
    return p * M::per_key(at.j, [&](int j) { return factor(v, at.b, at.h, at.i, j); });
  }
};

// ---- the variant type and the curated list ------------------------------------------------------

template <VariantId Id, class ScoreT, class ProbT = NoProb>
struct Variant {
  static constexpr VariantId kId = Id;
  using Score = ScoreT;
  using Prob = ProbT;
  /// Whether a backend may fold the softmax scale into its exponent (no score transform to apply first).
  static constexpr bool kFoldsScale = !Score::kActive;
};

template <VariantId Id>
struct VariantOfT;
template <>
struct VariantOfT<VariantId::plain> {
  using type = Variant<VariantId::plain, PlainScore>;
};
template <>
struct VariantOfT<VariantId::softcap> {
  using type = Variant<VariantId::softcap, SoftcapScore>;
};
template <>
struct VariantOfT<VariantId::alibi> {
  using type = Variant<VariantId::alibi, AlibiScore>;
};
template <>
struct VariantOfT<VariantId::dropout> {
  using type = Variant<VariantId::dropout, PlainScore, DropoutProb>;
};
template <>
struct VariantOfT<VariantId::dropout_softcap> {
  using type = Variant<VariantId::dropout_softcap, SoftcapScore, DropoutProb>;
};
template <>
struct VariantOfT<VariantId::bias> {
  using type = Variant<VariantId::bias, BiasScore>;
};
/// The hooks of a variant id.
template <VariantId Id>
using VariantOf = typename VariantOfT<Id>::type;

/// Calls f.template operator()<VariantOf<id>>() (host code: the CPU engine picks its variant per call).
template <class F>
decltype(auto) visit_variant(VariantId id, F&& f) {
  switch (id) {
    case VariantId::softcap: return f.template operator()<VariantOf<VariantId::softcap>>();
    case VariantId::alibi: return f.template operator()<VariantOf<VariantId::alibi>>();
    case VariantId::dropout: return f.template operator()<VariantOf<VariantId::dropout>>();
    case VariantId::dropout_softcap: return f.template operator()<VariantOf<VariantId::dropout_softcap>>();
    case VariantId::bias: return f.template operator()<VariantOf<VariantId::bias>>();
    case VariantId::plain: break;
  }
  return f.template operator()<VariantOf<VariantId::plain>>();
}

}  // namespace flatattn
