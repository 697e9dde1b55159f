// Packers of bf16 inputs into the AMX layouts of amx.h: bf16 values are moved, never converted.
#include <cstring>

#include "src/cpu/amx/amx.h"

namespace flatattn::cpu {

namespace {

const std::uint16_t* row16(const Rows& src, std::int64_t n) {
  return static_cast<const std::uint16_t*>(src.data) + src.offset(n);
}

}  // namespace

void pack_q_bf16(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                 std::int64_t kd, std::uint16_t* dst) {
  for (std::int64_t i = 0; i < rows_pad; ++i) {
    std::uint16_t* out = dst + i * kd;
    if (i < count) {
      std::memcpy(out, row16(src, n0 + i), sizeof(std::uint16_t) * d);
      std::memset(out + d, 0, sizeof(std::uint16_t) * (kd - d));
    } else {
      std::memset(out, 0, sizeof(std::uint16_t) * kd);
    }
  }
}

// Both VNNI packers move bf16 pairs as 32-bit words: a K panel is a (kd / 2) x 16 transpose of the words of 16
// key rows, a V pair row interleaves the elements of two key rows. Loops without branches on the element,
// so the compiler vectorises them (the packers run once per key block, key tile or head: O(N D) each).
void pack_k_vnni(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
                 std::uint16_t* dst) {
  const std::int64_t words = kd / 2, full = d / 2;  // pairs per key; pairs wholly inside d
  for (std::int64_t j = 0; j < count_pad; ++j) {
    std::uint32_t* panel = reinterpret_cast<std::uint32_t*>(dst + (j / 16) * kd * 16) + j % 16;
    std::int64_t w = 0;
    if (j < count) {
      const std::uint16_t* r = row16(src, j);
      for (; w < full; ++w) {
        std::uint32_t pair;
        std::memcpy(&pair, r + 2 * w, sizeof pair);
        panel[w * 16] = pair;
      }
      if (d % 2 != 0) panel[(w++) * 16] = r[d - 1];  // the last dim and a zero
    }
    for (; w < words; ++w) panel[w * 16] = 0;
  }
}

void pack_v_vnni(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                 std::uint16_t* dst) {
  for (std::int64_t j = 0; j < count_pad; j += 2) {  // count_pad even: the pair rows j / 2
    std::uint32_t* out = reinterpret_cast<std::uint32_t*>(dst + j * dp);
    const std::uint16_t* a = j < count ? row16(src, j) : nullptr;
    const std::uint16_t* b = j + 1 < count ? row16(src, j + 1) : nullptr;
    if (a != nullptr && b != nullptr) {
      for (std::int64_t i = 0; i < d; ++i) out[i] = std::uint32_t{a[i]} | (std::uint32_t{b[i]} << 16);
    } else if (a != nullptr) {
      for (std::int64_t i = 0; i < d; ++i) out[i] = a[i];
    } else {
      std::memset(out, 0, sizeof(std::uint32_t) * d);
    }
    std::memset(out + d, 0, sizeof(std::uint32_t) * (dp - d));
  }
}

}  // namespace flatattn::cpu
