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

void pack_k_vnni(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
                 std::uint16_t* dst) {
  for (std::int64_t j = 0; j < count_pad; ++j) {
    std::uint16_t* panel = dst + (j / 16) * kd * 16 + (j % 16) * 2;
    const std::uint16_t* s = j < count ? row16(src, j) : nullptr;
    for (std::int64_t i = 0; i < kd; ++i) panel[(i / 2) * 32 + i % 2] = (s != nullptr && i < d) ? s[i] : 0;
  }
}

void pack_v_vnni(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                 std::uint16_t* dst) {
  for (std::int64_t j = 0; j < count_pad; ++j) {
    std::uint16_t* pair = dst + (j / 2) * 2 * dp + j % 2;
    const std::uint16_t* s = j < count ? row16(src, j) : nullptr;
    for (std::int64_t i = 0; i < dp; ++i) pair[i * 2] = (s != nullptr && i < d) ? s[i] : 0;
  }
}

}  // namespace flatattn::cpu
