// The additive bias (BiasScore, src/core/variant.h) staged through shared memory: the BlockM x BlockN tile of
// a (query block, key block) step is copied into a slot of shared memory together with that step's K/V (or
// Q/dO) tiles, so the copies fly during the previous step's MMAs, and the score hook reads each fragment
// element from shared memory instead of global memory (before: two elements per row and fragment, a 4-byte
// load per half 32-byte sector, issued inside the hot loop and waited right away: a dense bf16 bias made the
// H100 forward 4.4-4.8x the no-bias one, bench/results/bias-h100-498d7dd.md).
//
// Copies: 16-byte cp.async chunks when the (b, h) slice's base and the row stride are 16-byte aligned, else
// 4-byte cp.async (f32) or 2-byte loads and shared stores (f16/bf16): a valid bias is never refused. Mq = 1
// (bias_si = 0) copies one row. Rows past the bias's Nq and keys past its Nk are zero (the rows are padding,
// discarded in the forward and of P = 0 in the backward; the keys are masked).
// Layout of a slot: row t (query m0 + t) at t (BlockN esize + 16) bytes: the 16-byte pad puts the 8 rows of an
// m16n8 fragment on distinct banks (4-byte reads of bf16/f16 pairs; 8-byte f32 reads: 2-way), and every
// fragment element of a thread is one base register plus an immediate offset (a swizzle cost a register per
// read and spilled the sm80 D = 128 forward).
// Slots are sized for the dtype at hand (launch: smem_bytes(dtype)); the instance stages the bias only when
// its worst case (f32) fits the family's shared memory (bias_tile_pad; without the pad when only that fits), else
// it keeps the global reads of bias_at.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "src/core/variant.h"
#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/score.cuh"
#include "src/cuda/policy/tile_size.h"

namespace flatattn::cuda {

/// Bytes of one staged tile of BlockM x BlockN elements of 2^esize_log2 bytes, rows padded by `pad` bytes.
constexpr int bias_slot_bytes(int block_m, int block_n, int esize_log2, int pad) {
  return block_m * ((block_n << esize_log2) + pad);
}

/// How an instance stages its bias: -1 not at all (no bias, or no room), else the row pad in bytes: 16 when
/// `slots` padded tiles of BlockM x BlockN f32 fit next to the kernel's other `base_bytes` of shared memory on
/// every GPU of family F, 0 when only unpadded ones do (their fragment reads conflict on banks: still far
/// cheaper than the global reads; the sm80-family D = 32 backward, sm75 D = 128 forward).
template <class V>
constexpr int bias_tile_pad(Family f, int block_m, int block_n, int slots, int base_bytes) {
  if (!has_bias<typename V::Score>) return -1;
  const int room = smem_optin_bytes(f) - base_bytes;
  return slots * bias_slot_bytes(block_m, block_n, 2, 16) <= room ? 16
         : slots * bias_slot_bytes(block_m, block_n, 2, 0) <= room ? 0
                                                                   : -1;
}

namespace bias_detail {

/// cp-size W bytes from global to shared with src_bytes (0..W) read and the rest zero (the sm75 path: plain loads).
template <int W>
FLATATTN_DEVICE void copy_part(std::uint32_t dst, const unsigned char* src, int src_bytes) {
#if FLATATTN_SM75_PATH
  if constexpr (W == 16) {
    if (src_bytes >= 16) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(src));
      asm volatile("st.shared.v4.u32 [%0], {%1,%2,%3,%4};\n" ::"r"(dst), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w));
    } else {
      for (int b = 0; b < 16; b += 2) {
        const unsigned short h = b < src_bytes ? __ldg(reinterpret_cast<const unsigned short*>(src + b)) : 0;
        asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(dst + b), "h"(h));
      }
    }
  } else {
    const unsigned v = src_bytes >= 4 ? __ldg(reinterpret_cast<const unsigned*>(src))
                       : src_bytes >= 2 ? static_cast<unsigned>(__ldg(reinterpret_cast<const unsigned short*>(src)))
                                        : 0u;
    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(dst), "r"(v));
  }
#else
  if constexpr (W == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
  }
#endif
}

__host__ __device__ constexpr int log2_of(int x) { return x <= 1 ? 0 : 1 + log2_of(x / 2); }

}  // namespace bias_detail

/// One CTA's view of its bias (the (b, h) slice) and of the shared slots that stage it. kOn = false: nothing
/// (no member is read, every call is the unstaged path), so instances without a staged bias do not change.
template <bool kOn, int kBM, int kBN, int kThreads, int kSlots, int kPad>
struct BiasTile {
  FLATATTN_DEVICE BiasTile(const VariantData&, int, int, std::uint32_t) {}
  FLATATTN_DEVICE void load(int, int, int, int, int = 0) const {}
  /// The score hook and the mask on a block of fragments (apply_score's arguments; slot j's tile of rows
  /// from m0, keys from n0).
  template <class V, Layout L, bool kBackward = false, int kMT, int kNT, class At>
  FLATATTN_DEVICE void score(float (&s)[kMT][kNT][4], const FwdParams& p, bool need_mask, const BandMask& bm,
                             int row0, int col0, At at, int, int, int) const {
    apply_score<V, L, kBackward>(s, p, need_mask, bm, row0, col0, at);
  }
  /// Shared memory for the slots at bias dtype `dtype` (bytes).
  static constexpr int smem_bytes(DType) { return 0; }
  static constexpr int kMaxBytes = 0;
};

template <int kBM, int kBN, int kThreads, int kSlots, int kPad>
struct BiasTile<true, kBM, kBN, kThreads, kSlots, kPad> {
  static_assert(kBN % 16 == 0 && (kBN & (kBN - 1)) == 0, "power-of-two BlockN of at least 16 keys");
  static_assert(kThreads >= kBN, "a pass of the copies covers at least one row (BlockN 2- or 4-byte chunks)");
  static constexpr int kMaxBytes = kSlots * bias_slot_bytes(kBM, kBN, 2, kPad);
  static constexpr int smem_bytes(DType dt) { return kSlots * bias_slot_bytes(kBM, kBN, dt == DType::f32 ? 2 : 1, kPad); }
  /// Bytes from one tile row to the next at element size 2^kLg.
  template <int kLg>
  static constexpr int kRowStride = (kBN << kLg) + kPad;

  // Only the slice's coordinates and the slots' address live in registers; the bias's fields are read from
  // the kernel parameters (constant memory) where they are used: the hot loop's registers are tight.
  const VariantData& v;
  int b, h;
  std::uint32_t base;  ///< shared address of slot 0

  FLATATTN_DEVICE BiasTile(const VariantData& var, int b_, int h_, std::uint32_t smem_base)
      : v(var), b(b_), h(h_), base(smem_base) {}

  FLATATTN_DEVICE int esize_log2() const { return v.bias_dtype == 0 ? 2 : 1; }

  FLATATTN_DEVICE std::uint32_t slot(int j) const {
    return base + static_cast<std::uint32_t>(j % kSlots) * (kBM * ((kBN << esize_log2()) + kPad));
  }

  /// Issues the copies of the tile of rows m0.., keys n0.. of query head h + dh into slot j (joins the caller's
  /// copy group; dh: the backward's step through the query heads of a kv head).
  FLATATTN_DEVICE void load(int j, int m0, int n0, int tid, int dh = 0) const {
    const int lg = esize_log2();
    const auto* src = static_cast<const unsigned char*>(v.bias) + ((b * v.bias_sb + (h + dh) * v.bias_sh) << lg);
    const unsigned si = static_cast<unsigned>(v.bias_si);  // < 2^32 (src/cuda/check_args.cc check_bias_slice)
    const unsigned a = static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(src)) | (si << lg);
    if (a % 16 == 0) {
      copy_rows<16>(slot(j), src, si, lg, m0, n0, tid);
    } else if (lg == 2) {
      copy_rows<4>(slot(j), src, si, 2, m0, n0, tid);
    } else {
      copy_rows<2>(slot(j), src, si, 1, m0, n0, tid);
    }
  }

  /// The copies of load() in chunks of W bytes (lg: log2 of the element size). Each thread keeps one chunk
  /// column and steps over the rows (its column's valid bytes are the same in every row); rows past the bias's
  /// Nq and keys past its Nk are zero (rows past the sequence are discarded, keys past it masked).
  template <int W>
  FLATATTN_DEVICE void copy_rows(std::uint32_t dst, const unsigned char* src, unsigned si, int lg, int m0, int n0,
                                 int tid) const {
    const int chunks_log2 = bias_detail::log2_of(kBN) + lg - bias_detail::log2_of(W);  // per row
    const int rows = si == 0 ? 1 : min(kBM, v.bias_nq - m0);  // rows to read; the rest zero
    const int t_end = si == 0 ? 1 : kBM;                          // Mq = 1: only row 0 is read
    const int step = kThreads >> chunks_log2;  // rows per pass (kThreads >= chunks per row: static_assert)
    int t = tid >> chunks_log2;
    const int cb = (tid & ((1 << chunks_log2) - 1)) * W;  // the thread's byte within a row
    const int left = ((v.bias_nk - n0) << lg) - cb;       // valid bytes from it (the key block starts inside)
    const int n = left >= W ? W : left > 0 ? left : 0;
    // Element offsets in 32 bits (the slice's span is below 2^32 elements), bytes in 64 (f32: up to 2^34).
    const unsigned char* g = src + (static_cast<std::uint64_t>(static_cast<unsigned>(m0 + t) * si + n0) << lg) + cb;
    const std::uint64_t g_step = static_cast<std::uint64_t>(static_cast<unsigned>(step) * si) << lg;
    const std::uint32_t rs = (kBN << lg) + kPad;
    std::uint32_t d = dst + t * rs + cb;
#pragma unroll 1
    for (; t < t_end; t += step) {
      const int nn = t < rows ? n : 0;
      if constexpr (W == 2) {
        const unsigned short x = nn > 0 ? __ldg(reinterpret_cast<const unsigned short*>(g)) : 0;
        asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(d), "h"(x));
      } else {
        bias_detail::copy_part<W>(d, nn > 0 ? g : src, nn);
      }
      g += g_step;
      d += step * rs;
    }
  }

  /// The staged score hook: x = pre s + post bias (BiasScore::score with the bias from slot j), then the mask.
  template <class V, Layout L, bool kBackward = false, int kMT, int kNT, class At>
  FLATATTN_DEVICE void score(float (&s)[kMT][kNT][4], const FwdParams& p, bool need_mask, const BandMask& bm,
                             int row0, int col0, At, int j, int m0, int n0) const {
    static_assert(has_bias<typename V::Score> && !carries<typename V::Score>, "the bias score keeps x");
    const std::uint32_t sl = slot(j);
    const float pre = p.var.pre, post = p.var.post;
    if (v.bias_dtype == 0) {
      add<L, 2>(s, sl, row0, col0, m0, n0, pre, post);
    } else {
      add<L, 1>(s, sl, row0, col0, m0, n0, pre, post);
    }
    apply_mask<L>(s, need_mask, bm, row0, col0);
  }

  /// 16-bit bias bits -> float: bf16 (its top half) or f16 (a conversion), chosen by a select rather than a
  /// branch so that the hot loop has one 16-bit path.
  FLATATTN_DEVICE float widen(unsigned bits16_in_top, unsigned short h, bool bf16) const {
    const float f = __half2float(__ushort_as_half(h));
    return bf16 ? __uint_as_float(bits16_in_top) : f;
  }

  /// Bias elements (r, c) and (r, c + 1) at shared address a.
  template <int kLg>
  FLATATTN_DEVICE float2 pair(std::uint32_t a, bool bf16) const {
    if constexpr (kLg == 2) {
      float2 f;
      asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(f.x), "=f"(f.y) : "r"(a));
      return f;
    } else {
      unsigned u;
      asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(u) : "r"(a));
      return make_float2(widen(u << 16, static_cast<unsigned short>(u & 0xffffu), bf16),
                         widen(u & 0xffff0000u, static_cast<unsigned short>(u >> 16), bf16));
    }
  }

  /// The bias element at shared address a.
  template <int kLg>
  FLATATTN_DEVICE float one(std::uint32_t a, bool bf16) const {
    if constexpr (kLg == 2) {
      float f;
      asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(f) : "r"(a));
      return f;
    } else {
      unsigned short u;
      asm volatile("ld.shared.u16 %0, [%1];\n" : "=h"(u) : "r"(a));
      return widen(static_cast<unsigned>(u) << 16, u, bf16);
    }
  }

  /// Adds post * bias to pre * x for every element (for_each_element's layout). Query-major (rows are queries):
  /// a thread's two adjacent keys are one 4- or 8-byte read; key-major (rows are keys, the sm90 backward's S^T):
  /// single reads. Every read is the thread's base address plus a constant. Mq = 1: the tile's row 0 serves
  /// every query (each key's value read once per thread).
  template <Layout L, int kLg, int kMT, int kNT>
  FLATATTN_DEVICE void add(float (&s)[kMT][kNT][4], std::uint32_t sl, int row0, int col0, int m0, int n0,
                           float pre, float post) const {
    constexpr int kRS = kRowStride<kLg>;
    const bool bcast = v.bias_si == 0, bf16 = v.bias_dtype == 2;
    if constexpr (L == Layout::query_major) {
      if (bcast) {
        const std::uint32_t a = sl + ((col0 - n0) << kLg);
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          const float2 b = pair<kLg>(a + ((nt * 8) << kLg), bf16);
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              s[mt][nt][2 * h] = pre * s[mt][nt][2 * h] + post * b.x;
              s[mt][nt][2 * h + 1] = pre * s[mt][nt][2 * h + 1] + post * b.y;
            }
        }
      } else {
        const std::uint32_t a = sl + (row0 - m0) * kRS + ((col0 - n0) << kLg);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt) {
              const float2 b = pair<kLg>(a + (mt * 16 + 8 * h) * kRS + ((nt * 8) << kLg), bf16);
              s[mt][nt][2 * h] = pre * s[mt][nt][2 * h] + post * b.x;
              s[mt][nt][2 * h + 1] = pre * s[mt][nt][2 * h + 1] + post * b.y;
            }
      }
    } else {  // row r is key r, column c query c: element (r, c) at tile row c - m0, key byte (r - n0) esize
      if (bcast) {
        const std::uint32_t a = sl + ((row0 - n0) << kLg);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const float b = one<kLg>(a + ((mt * 16 + 8 * h) << kLg), bf16);
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
              for (int e = 0; e < 2; ++e) s[mt][nt][2 * h + e] = pre * s[mt][nt][2 * h + e] + post * b;
          }
      } else {
        const std::uint32_t a = sl + (col0 - m0) * kRS + ((row0 - n0) << kLg);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                float& x = s[mt][nt][2 * h + e];
                x = pre * x + post * one<kLg>(a + (nt * 8 + e) * kRS + ((mt * 16 + 8 * h) << kLg), bf16);
              }
      }
    }
  }
};

/// The BiasTile of variant V in a kernel of family F with `slots` slots after its other kBaseBytes of shared
/// memory (bias_tile_pad decides whether and how).
template <class V, Family F, int kBM, int kBN, int kThreads, int kSlots, int kBaseBytes>
using BiasTileFor = BiasTile<bias_tile_pad<V>(F, kBM, kBN, kSlots, kBaseBytes) >= 0, kBM, kBN, kThreads, kSlots,
                             bias_tile_pad<V>(F, kBM, kBN, kSlots, kBaseBytes) == 16 ? 16 : 0>;

}  // namespace flatattn::cuda
