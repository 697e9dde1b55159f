// The scalar packers of the user's rows into the AMX layouts of amx.h (the *_ref functions: the reference the
// AVX-512 packers of pack_avx512.cc are tested against, bit for bit, and the Q copy of bf16 rows). bf16 inputs
// are moved, never converted; f32 inputs (Options::fp32_matmul = bf16, the opt-in) are rounded to bf16 to nearest
// even (float_to_bf16, src/core/half.h) as they are packed -- the only place the opt-in changes a value.
#include <cstring>

#include "src/core/half.h"
#include "src/cpu/amx/amx.h"

namespace flatattn::cpu {

namespace {

/// Element i of row n of src as bf16 bits: T = std::uint16_t (bf16 storage, moved) or float (rounded).
template <class T>
struct Src {
  const T* base;
  const Rows& r;
  [[nodiscard]] const T* row(std::int64_t n) const { return base + r.offset(n); }
  static std::uint16_t bits(const T* row, std::int64_t i) {
    if constexpr (sizeof(T) == 2) {
      return row[i];
    } else {
      return float_to_bf16(row[i]);
    }
  }
  static std::uint32_t pair(const T* row, std::int64_t i) {  // elements i and i + 1 as one VNNI word
    if constexpr (sizeof(T) == 2) {
      std::uint32_t w;
      std::memcpy(&w, row + i, sizeof w);
      return w;
    } else {
      return std::uint32_t{float_to_bf16(row[i])} | (std::uint32_t{float_to_bf16(row[i + 1])} << 16);
    }
  }
};

template <class T>
void q_rows(const Src<T>& s, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
            std::int64_t kd, std::uint16_t* dst) {
  for (std::int64_t i = 0; i < rows_pad; ++i) {
    std::uint16_t* out = dst + i * kd;
    if (i < count) {
      const T* r = s.row(n0 + i);
      if constexpr (sizeof(T) == 2) {
        std::memcpy(out, r, sizeof(std::uint16_t) * d);
      } else {
        for (std::int64_t e = 0; e < d; ++e) out[e] = Src<T>::bits(r, e);
      }
      std::memset(out + d, 0, sizeof(std::uint16_t) * (kd - d));
    } else {
      std::memset(out, 0, sizeof(std::uint16_t) * kd);
    }
  }
}

// Both VNNI packers move bf16 pairs as 32-bit words: a K panel is a (kd / 2) x 16 transpose of the words of 16
// key rows, a V pair row interleaves the elements of two key rows. Loops without branches on the element,
// so the compiler vectorises them (the packers run once per key block, key tile or head: O(N D) each).
template <class T>
void k_panels(const Src<T>& s, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
              std::uint16_t* dst) {
  const std::int64_t words = kd / 2, full = d / 2;  // pairs per key; pairs wholly inside d
  for (std::int64_t j = 0; j < count_pad; ++j) {
    std::uint32_t* panel = reinterpret_cast<std::uint32_t*>(dst + (j / 16) * kd * 16) + j % 16;
    std::int64_t w = 0;
    if (j < count) {
      const T* r = s.row(j);
      for (; w < full; ++w) panel[w * 16] = Src<T>::pair(r, 2 * w);
      if (d % 2 != 0) panel[(w++) * 16] = Src<T>::bits(r, d - 1);  // the last dim and a zero
    }
    for (; w < words; ++w) panel[w * 16] = 0;
  }
}

template <class T>
void v_pairs(const Src<T>& s, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
             std::uint16_t* dst) {
  for (std::int64_t j = 0; j < count_pad; j += 2) {  // count_pad even: the pair rows j / 2
    std::uint32_t* out = reinterpret_cast<std::uint32_t*>(dst + j * dp);
    const T* a = j < count ? s.row(j) : nullptr;
    const T* b = j + 1 < count ? s.row(j + 1) : nullptr;
    if (a != nullptr && b != nullptr) {
      for (std::int64_t i = 0; i < d; ++i)
        out[i] = std::uint32_t{Src<T>::bits(a, i)} | (std::uint32_t{Src<T>::bits(b, i)} << 16);
    } else if (a != nullptr) {
      for (std::int64_t i = 0; i < d; ++i) out[i] = Src<T>::bits(a, i);
    } else {
      std::memset(out, 0, sizeof(std::uint32_t) * d);
    }
    std::memset(out + d, 0, sizeof(std::uint32_t) * (dp - d));
  }
}

/// Calls f with the typed source of src (bf16 or f32; the path selection admits no other dtype here).
template <class F>
void typed(const Rows& src, F&& f) {
  if (src.dtype == DType::f32) {
    f(Src<float>{static_cast<const float*>(src.data), src});
  } else {
    f(Src<std::uint16_t>{static_cast<const std::uint16_t*>(src.data), src});
  }
}

}  // namespace

void pack_q_bf16_ref(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                 std::int64_t kd, std::uint16_t* dst) {
  typed(src, [&](const auto& s) { q_rows(s, n0, count, rows_pad, d, kd, dst); });
}

void pack_k_vnni_ref(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
                 std::uint16_t* dst) {
  typed(src, [&](const auto& s) { k_panels(s, count, count_pad, d, kd, dst); });
}

void pack_v_vnni_ref(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                 std::uint16_t* dst) {
  typed(src, [&](const auto& s) { v_pairs(s, count, count_pad, d, dp, dst); });
}

}  // namespace flatattn::cpu
