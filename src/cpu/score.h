// The variant seam on the CPU engine (src/core/variant.h): the score hook on a block of logit rows, 16 keys
// at a time, and the hooks' math on the engine's vector type (the backward applies dscore with it). Every
// dataflow (Flash, FLAT) and both backward passes call these: a new score type needs no change here.
#pragma once

#include <algorithm>
#include <cstdint>

#include "src/core/problem.h"
#include "src/core/variant.h"
#include "src/cpu/simd.h"

namespace flatattn::cpu {

/// The hooks' math on the engine's vector type.
struct VecMath {
  FLATATTN_INLINE static simd::vf tanh(simd::vf x) { return simd::tanh(x); }
  FLATATTN_INLINE static simd::vf max(simd::vf a, simd::vf b) { return simd::vmax(a, b); }
  FLATATTN_INLINE static simd::vf abs(simd::vf x) { return simd::vmax(x, -x); }
  /// |a| with the sign of b (sign bit copied: -0 and -inf count as negative).
  FLATATTN_INLINE static simd::vf copysign(simd::vf a, simd::vf b) {
    const simd::vi sign_bit = simd::vi{} + static_cast<std::int32_t>(0x80000000u);
    return (simd::vf)(((simd::vi)a & ~sign_bit) | ((simd::vi)b & sign_bit));
  }
  FLATATTN_INLINE static simd::vf exp(simd::vf x) { return simd::exp(x); }
  FLATATTN_INLINE static simd::vf div(simd::vf a, simd::vf b) { return a / b; }
  /// Lane l holds key j + l.
  FLATATTN_INLINE static simd::vf keys(int j) {
    simd::vf k;
    for (int l = 0; l < simd::kWidth; ++l) k[l] = static_cast<float>(j + l);
    return k;
  }
  /// Lane l holds f(j + l).
  template <class F>
  FLATATTN_INLINE static simd::vf per_key(int j, F&& f) {
    simd::vf k;
    for (int l = 0; l < simd::kWidth; ++l) k[l] = f(j + l);
    return k;
  }
};

/// The score coordinates of row i, key j of sequence b (sp: its lengths), query head h, kv head hk.
inline ScoreAt score_at(std::int64_t b, std::int64_t h, std::int64_t hk, std::int64_t i, std::int64_t j,
                        const SeqSpan& sp) {
  return {static_cast<int>(b), static_cast<int>(h), static_cast<int>(hk), static_cast<int>(i), static_cast<int>(j),
          static_cast<int>(sp.nk - sp.nq)};
}

/// The engine's hook data: its logits are S = (scale Q) K^T (the scale is packed into Q) and its softmax
/// takes e^x, so make_variant_data(args, 1, 1).
inline VariantData cpu_variant_data(const Problem& p) { return make_variant_data(p.variant, 1.f, 1.f); }

/// Whether the call's variant transforms the logits (plain: the scale is already in S).
inline bool transforms_scores(const Problem& p) {
  return visit_variant(variant_of(p.variant), [&]<class V>() { return V::Score::kActive; });
}

/// x = score(S) of variant V in place on rows [0, rows) of s (leading dimension ld) over ncols keys (a
/// multiple of simd::kWidth), and the backward's kept value in `keep` (same layout; null: none) for the
/// derivative: a copy of x, or the score's carry (then x = score_of_carry(carry), src/core/variant.h).
/// `at` names row 0 and key column 0 of the block. Nothing happens without a score transform.
template <class V>
void apply_score(const VariantData& vd, ScoreAt at, float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld,
                 float* keep) {
  if constexpr (V::Score::kActive) {
    for (std::int64_t i = 0; i < rows; ++i) {
      for (std::int64_t j = 0; j < ncols; j += simd::kWidth) {
        ScoreAt e = at;
        e.i += static_cast<int>(i);
        e.j += static_cast<int>(j);
        const simd::vf raw = simd::load(s + i * ld + j);
        if (keep != nullptr && carries<typename V::Score>) {
          const simd::vf c = carry_score<typename V::Score, VecMath>(raw, vd, e);
          simd::store(keep + i * ld + j, c);
          simd::store(s + i * ld + j, score_of_carry<typename V::Score, VecMath>(c, vd));
          continue;
        }
        const simd::vf x = V::Score::template score<VecMath>(raw, vd, e);
        simd::store(s + i * ld + j, x);
        if (keep != nullptr) simd::store(keep + i * ld + j, x);
      }
    }
  }
}

/// Dropout's factors (0 or 1 / (1 - p)) of row at.i, keys at.j .. at.j + n - 1 (n <= kDropoutChunk), into f.
/// Each Philox group (keys sharing (k >> 6, (k >> 1) & 3): 16 keys) is evaluated once per call, so a chunk of 64
/// keys that starts at a multiple of 64 costs 4 calls (one per 16 elements). n <= 64 keys touch at most two
/// 64-key groups: the 8 slots ((k >> 6) & 1, (k >> 1) & 3) are distinct for them.
inline constexpr int kDropoutChunk = kDropoutColAlign;
template <class V>
void dropout_factors(const VariantData& vd, const ScoreAt& at, int n, float* f) {
  Philox4 blk[8];
  int have[8];
  for (int& g : have) g = -1;
  for (int l = 0; l < n; ++l) {
    const int k = at.j + l;
    const int slot = ((k >> 6) & 1) * 4 + ((k >> 1) & 3);
    if (have[slot] != (k >> 6)) blk[slot] = V::Prob::block(vd, at.b, at.h, at.i, k), have[slot] = k >> 6;
    f[l] = V::Prob::keep(blk[slot], k, vd) ? vd.drop_scale : 0.f;
  }
}

/// The probability hook of variant V (dropout) in place on rows [0, rows) of probabilities p (leading dimension
/// ld) over ncols keys (a multiple of simd::kWidth); `at` names row 0 and key column 0. Nothing without one.
template <class V>
void apply_prob(const VariantData& vd, ScoreAt at, float* p, std::int64_t rows, std::int64_t ncols, std::int64_t ld) {
  if constexpr (V::Prob::kDropout) {
    static_assert(kDropoutChunk % simd::kWidth == 0, "whole vectors per chunk");
    alignas(64) float f[kDropoutChunk];
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j0 = 0; j0 < ncols; j0 += kDropoutChunk) {
        const int n = static_cast<int>(std::min<std::int64_t>(kDropoutChunk, ncols - j0));  // a multiple of kWidth
        dropout_factors<V>(vd, {at.b, at.h, at.hk, at.i + static_cast<int>(i), at.j + static_cast<int>(j0)}, n, f);
        for (int j = 0; j < n; j += simd::kWidth)
          simd::store(p + i * ld + j0 + j, simd::load(p + i * ld + j0 + j) * simd::load(f + j));
      }
  } else if constexpr (V::Prob::kActive) {
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < ncols; j += simd::kWidth) {
        const ScoreAt e{at.b, at.h, at.hk, at.i + static_cast<int>(i), at.j + static_cast<int>(j)};
        simd::store(p + i * ld + j, V::Prob::template prob<VecMath>(simd::load(p + i * ld + j), vd, e));
      }
  }
}

/// The same for the call's variant.
inline void apply_prob(const Problem& p, ScoreAt at, float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld) {
  visit_variant(variant_of(p.variant), [&]<class V>() { apply_prob<V>(cpu_variant_data(p), at, s, rows, ncols, ld); });
}

/// Whether the call's variant has a probability hook.
inline bool transforms_probs(const Problem& p) {
  return visit_variant(variant_of(p.variant), [&]<class V>() { return V::Prob::kActive; });
}

/// The same for the call's variant (the forward tiles: one dispatch per key block).
inline void apply_score(const Problem& p, ScoreAt at, float* s, std::int64_t rows, std::int64_t ncols,
                        std::int64_t ld, float* keep) {
  visit_variant(variant_of(p.variant),
                [&]<class V>() { apply_score<V>(cpu_variant_data(p), at, s, rows, ncols, ld, keep); });
}

}  // namespace flatattn::cpu
