// The variant seam on the CUDA kernels (src/core/variant.h): the score hook and the mask on a warp's
// accumulator fragments, and the score's derivative on dS, for both tile layouts. Every forward kernel
// (sm80/sm86/sm75 Flash, sm90 Flash, FLAT) and both backward kernels call these, so a new score type
// changes no kernel.
#pragma once

#include <cmath>

#include "src/core/variant.h"
#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/mask.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/warp_gemm.cuh"  // pack_p

namespace flatattn::cuda {

/// What the rows of a score tile are: query-major S (rows = queries, columns = keys: every forward and
/// the sm80 backward) or key-major S^T (rows = keys, columns = queries: the sm90 backward, whose products
/// take K as the row operand, FlashAttention-3's SwapAB).
enum class Layout { query_major, key_major };

/// f(x, r, c) for every element x of a block of accumulator fragments in the m16n8 C layout: element e of
/// fragment (mt, nt) sits at row row0 + 16 mt + 8 (e / 2), column col0 + 8 nt + (e % 2).
template <int kMT, int kNT, class F>
FLATATTN_DEVICE void for_each_element(float (&s)[kMT][kNT][4], int row0, int col0, F&& f) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) f(s[mt][nt][e], row0 + mt * 16 + 8 * (e >> 1), col0 + nt * 8 + (e & 1));
}

/// The mask alone (apply_score's second half; the staged bias of common/bias_tile.cuh calls it after its own
/// score): -inf outside the visible keys of each query (query-major) or queries of each key, when need_mask.
template <Layout L, int kMT, int kNT>
FLATATTN_DEVICE void apply_mask(float (&s)[kMT][kNT][4], bool need_mask, const BandMask& bm, int row0, int col0) {
  if (need_mask) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = row0 + mt * 16 + 8 * h;
        int lo, hi;  // the row's visible columns: keys of query r, or queries of key r
        if constexpr (L == Layout::query_major) {
          lo = bm.lo(r), hi = bm.hi(r);
        } else {
          bm.queries(r, lo, hi);
        }
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int c = col0 + nt * 8 + e;
            if (c < lo || c > hi) s[mt][nt][2 * h + e] = -INFINITY;
          }
      }
  }
}

/// The score hook, then the mask, on one block of accumulator fragments (for_each_element's layout, in
/// sequence coordinates; row0: this thread's row of m-tile 0, col0: its first column). The score applies when the
/// variant has one or the scale is not folded into the softmax (p.fold = 0); the mask (-inf outside the
/// visible keys of each query) only when the block crosses the band (need_mask). `at` gives b, h, hk (and the
/// lengths and head constant of a split score: ScoreAtOf, with_lengths of src/core/variant.h).
/// kBackward: the backward's kept value instead of x (carry_score of src/core/variant.h; x for most scores),
/// read back with score_of_carry and ds_factor.
template <class V, Layout L, bool kBackward = false, int kMT, int kNT, class At>
FLATATTN_DEVICE void apply_score(float (&s)[kMT][kNT][4], const FwdParams& p, bool need_mask, const BandMask& bm,
                                 int row0, int col0, At at) {
  using Score = typename V::Score;
  if constexpr (has_split<Score>) {
    // The split form (src/core/variant.h): one row term per block, at this thread's first element (row0, col0);
    // every element from its compile-time offsets. Elements with equal offset differences share their distance
    // term (ALiBi: row + 8 at column + 8), which the compiler computes once. at.head was loaded before the loop.
    static_assert(!carries<Score>, "the split form gives x, which the backward keeps as is");
    SplitAt a = at;
    a.i = L == Layout::query_major ? row0 : col0;
    a.j = L == Layout::query_major ? col0 : row0;
    const float rt = Score::row_term(a);
    auto block = [&]<bool kFlip>() {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int dr = mt * 16 + 8 * (e >> 1), dc = nt * 8 + (e & 1);  // offsets of the row and the column
            float& x = s[mt][nt][e];
            x = Score::template split<kFlip>(x, p.var, a, rt, L == Layout::query_major ? dr : dc,
                                             L == Layout::query_major ? dc : dr);
          }
    };
    if (Score::flip(a)) {  // uniform: one head per call
      block.template operator()<true>();
    } else {
      block.template operator()<false>();
    }
  } else if (V::Score::kActive || !p.fold) {
    for_each_element(s, row0, col0, [&](float& x, int r, int c) {
      at.i = L == Layout::query_major ? r : c;
      at.j = L == Layout::query_major ? c : r;
      if constexpr (kBackward) {
        x = carry_score<typename V::Score, FloatMath>(x, p.var, at);
      } else {
        x = V::Score::template score<FloatMath>(x, p.var, at);
      }
    });
  }
  apply_mask<L>(s, need_mask, bm, row0, col0);
}

/// Dropout on one row of a query-major fragment block: f(nt, e, keep) for this thread's elements (n-tile nt,
/// element e of the row half) of row r, whose columns are col0 + 8 nt + e (col0 = block column + 2 (lane & 3)).
/// One Philox call per eight n-tiles (src/core/philox.h: the 16 bytes of a call are the columns
/// 64 a + 2 (lane & 3) + 8 w + e, byte 2 w + e). Precondition: the n-tiles 8 g .. 8 g + 7 share (column >> 6),
/// i.e. col0 - col0 % 8 is a multiple of 64 when kNT >= 8 (then n-tile nt reads the compile-time byte
/// 2 (nt % 8) + e), or of 8 kNT when kNT < 8 (one call, the byte from the column): every kernel's key blocks
/// and warp column offsets are multiples of 8 kNT, and kBlockN a multiple of 64 where kNT >= 8.
template <class V, int kNT, class F>
FLATATTN_DEVICE void for_each_keep(const VariantData& v, int b, int h, int r, int col0, F&& f) {
  static_assert(kNT % 8 == 0 || 8 % kNT == 0, "n-tiles must split evenly into 64-key Philox groups");
  if constexpr (kNT >= 8) {
    // Per element one byte compare against the call's words (the call's 16 keep bits packed first, SWAR, left
    // 56 bytes of spills in the sm80 family's D = 128 forward built for sm_90 against 8 this way).
    Philox4 blk{};
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      if (nt % 8 == 0) blk = V::Prob::block(v, b, h, r, col0 + nt * 8);
#pragma unroll
      for (int e = 0; e < 2; ++e) f(nt, e, V::Prob::keep_byte(blk, 2 * (nt % 8) + e, v));
    }
  } else {
    const Philox4 blk = V::Prob::block(v, b, h, r, col0);
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) f(nt, e, V::Prob::keep(blk, col0 + nt * 8 + e, v));
  }
}

/// The 16-bit lanes of one packed pair from the keep bits of dropout_keep_msb: lane e is 0xffff iff byte
/// 2 kHalf + e of the word is kept (prmt's sign-replicate mode, PTX ISA "prmt": a selector nibble with its top bit
/// set copies the top bit of the selected byte over the whole output byte).
template <int kHalf>
FLATATTN_DEVICE std::uint32_t keep_lanes(std::uint32_t msb) {
  constexpr std::uint32_t kSel = kHalf == 0 ? 0x9988u : 0xbbaau;
  std::uint32_t r;
  asm("prmt.b32 %0, %1, 0, %2;" : "=r"(r) : "r"(msb), "n"(kSel));
  return r;
}

/// Dropout on packed P (after pack_p; kNT % 8 == 0): each 16-bit element that its Philox byte drops becomes +0. One
/// call per row and 64 keys (eight n-tiles, for_each_keep's grouping): its word w serves n-tiles 2 w (bytes 0, 1,
/// the packed pair's lanes) and 2 w + 1 (bytes 2, 3). Per 4 elements 3 operations for the keep bits, 2 permutes,
/// 2 ANDs; the 1 / (1 - p) scale is not applied here but on the output (scale_output_for_dropout).
template <class V, int kMT, int kNT>
FLATATTN_DEVICE void drop_packed(std::uint32_t (&pa)[kMT][kNT / 2][4], const VariantData& v, int b, int h, int row0,
                                 int col0) {
  static_assert(kNT % 8 == 0, "a Philox call covers eight n-tiles");
  const DropoutSwar sw = dropout_swar(v.drop_threshold);
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr)
#pragma unroll
      for (int g = 0; g < kNT / 8; ++g) {
        const Philox4 o = V::Prob::block(v, b, h, row0 + mt * 16 + 8 * hr, col0 + g * 64);
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          const std::uint32_t m = dropout_keep_msb(o.x[w], sw);
          pa[mt][4 * g + w][hr] &= keep_lanes<0>(m);      // n-tile 8 g + 2 w, this row half
          pa[mt][4 * g + w][2 + hr] &= keep_lanes<1>(m);  // n-tile 8 g + 2 w + 1
        }
      }
}

/// The probability hook on a query-major block of probabilities (after the softmax, before P V), in the
/// layout of apply_score. Nothing for a variant without one. Dropout (kNT < 8 only; pack_probs masks packed P
/// otherwise): one Philox call per row; dropped entries become 0, kept ones stay unscaled (the output carries
/// 1 / (1 - p), scale_output_for_dropout).
template <class V, int kMT, int kNT>
FLATATTN_DEVICE void apply_prob(float (&s)[kMT][kNT][4], const FwdParams& p, int row0, int col0, ScoreAt at) {
  if constexpr (V::Prob::kDropout) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
        for_each_keep<V, kNT>(p.var, at.b, at.h, row0 + mt * 16 + 8 * hr, col0, [&](int nt, int e, bool keep) {
          float& x = s[mt][nt][2 * hr + e];
          x = keep ? x : 0.f;
        });
  } else if constexpr (V::Prob::kActive) {
    for_each_element(s, row0, col0, [&](float& x, int r, int c) {
      at.i = r;
      at.j = c;
      x = V::Prob::template prob<FloatMath>(x, p.var, at);
    });
  }
}

/// Every forward kernel's step from probabilities to the A fragments of P V: the probability hook, then packing
/// (pack_p). Dropout on whole Philox groups (kNT % 8 == 0) masks the packed pairs instead (drop_packed): 1.75
/// integer operations per element besides the generator, where the fp32 form took a byte extract, a compare, a
/// multiply and a select per element.
template <class E, class V, int kMT, int kNT>
FLATATTN_DEVICE void pack_probs(float (&s)[kMT][kNT][4], std::uint32_t (&pa)[kMT][kNT / 2][4], const FwdParams& p,
                                int row0, int col0, ScoreAt at) {
  if constexpr (V::Prob::kDropout && kNT % 8 == 0) {
    pack_p<E>(s, pa);
    drop_packed<V, kMT, kNT>(pa, p.var, at.b, at.h, row0, col0);
  } else {
    apply_prob<V>(s, p, row0, col0, at);
    pack_p<E>(s, pa);
  }
}

/// Dropout's 1 / (1 - p) on the output: every forward kernel keeps the dropped-and-unscaled P V and multiplies the
/// output factor (finalize_rows' 1 / l) once per row instead. Nothing without dropout.
template <class V, int kMT>
FLATATTN_DEVICE void scale_output_for_dropout(float (&inv)[kMT][2], const FwdParams& p) {
  if constexpr (V::Prob::kDropout) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) inv[mt][0] *= p.var.drop_scale, inv[mt][1] *= p.var.drop_scale;
  }
}

/// x of an element from the backward's kept value c (apply_score<V, L, true>; c itself for most scores).
template <class V>
FLATATTN_DEVICE float score_of_kept(float c, const FwdParams& p) {
  return score_of_carry<typename V::Score, FloatMath>(c, p.var);
}

/// The factor of (dP - D_i) in dS for one element: P times the score's derivative at the element's kept value
/// c (apply_score<V, L, true>: x, or the score's carry) (the scale, common to every variant, joins at the end
/// of the backward).
template <class V>
FLATATTN_DEVICE float ds_factor(float pr, float c, const FwdParams& p) {
  if constexpr (V::Score::kActive) {
    return pr * V::Score::template dscore<FloatMath>(c, p.var);
  } else {
    return pr;
  }
}

/// Backward kernels recompute P and apply ds_factor; a probability hook also needs its rule for dS and dV.
/// Both backward kernels implement dropout's (FlashAttention Alg. 4); any other active hook is refused at
/// compile time instead of computing a wrong gradient.
template <class V>
inline constexpr bool kBackwardServes = !V::Prob::kActive || V::Prob::kDropout;

}  // namespace flatattn::cuda
