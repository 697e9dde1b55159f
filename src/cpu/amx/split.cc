// Operands of the bf16 products as sums of bf16 pieces (SplitPolicy, src/cpu/amx/amx.h): the piece rule, the
// product list and the scalar packers of Q, K, V and P into the AMX layouts with their pieces. Compiled with the
// engine's ordinary flags (any x86-64); the packers are O(N D) per head (K, V) or tile (Q, P off the fused
// softmax), against the products' O(N^2 D).
#include <cmath>
#include <cstring>

#include "src/core/half.h"
#include "src/cpu/amx/amx.h"

namespace flatattn::cpu {

namespace {

/// Piece k of x: x_1 = bf16(x), x_k = bf16(x - x_1 - ... - x_{k-1}) (nearest even); 0 beyond the first where
/// x_1 is not finite (inf - inf would give NaN pieces).
std::uint16_t piece(float x, int k) {
  float r = x;
  for (int t = 0;; ++t) {
    const std::uint16_t h = float_to_bf16(r);
    if (t == k) return h;
    const float hf = bf16_to_float(h);
    if (!std::isfinite(hf)) return 0;
    r -= hf;  // exact: hf is r rounded to 8 bits, so r - hf fits fp32
  }
}

float element(const Rows& r, std::int64_t n, std::int64_t i) { return load_float(r.data, r.dtype, r.offset(n) + i); }

}  // namespace

std::uint16_t bf16_piece(float x, int k) { return piece(x, k); }

SplitPolicy split_policy(const Problem& p) { return p.dtype == DType::f16 ? kSplitF16 : kSplitBf16; }

int split_pairs(const SplitPolicy& s, int a[9], int b[9]) {
  int n = 0;
  for (int order = s.max_order; order >= 0; --order)
    for (int x = 0; x < s.pieces; ++x) {
      const int y = order - x;
      if (y < 0 || y >= s.pieces) continue;
      a[n] = x, b[n] = y, ++n;
    }
  return n;
}

void pack_q_split(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                  std::int64_t kd, const SplitPolicy& s, std::uint16_t* dst) {
  int a[9], b[9];
  const int np = split_pairs(s, a, b);
  const std::int64_t kq = np * kd;
  std::memset(dst, 0, sizeof(std::uint16_t) * rows_pad * kq);
  float x[1024];
  for (std::int64_t i = 0; i < count; ++i) {
    for (std::int64_t e0 = 0; e0 < d; e0 += 1024) {
      const std::int64_t ne = d - e0 < 1024 ? d - e0 : 1024;
      for (std::int64_t e = 0; e < ne; ++e) x[e] = element(src, n0 + i, e0 + e);
      for (int t = 0; t < np; ++t)
        for (std::int64_t e = 0; e < ne; ++e) dst[i * kq + t * kd + e0 + e] = piece(x[e], a[t]);
    }
  }
}

void pack_k_split(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
                  const SplitPolicy& s, std::uint16_t* dst) {
  int a[9], b[9];
  const int np = split_pairs(s, a, b);
  const std::int64_t kq = np * kd;
  std::memset(dst, 0, sizeof(std::uint16_t) * count_pad * kq);
  for (std::int64_t j = 0; j < count; ++j) {
    std::uint16_t* panel = dst + (j / 16) * kq * 16 + (j % 16) * 2;
    for (std::int64_t e = 0; e < d; ++e) {
      const float x = element(src, j, e);
      for (int t = 0; t < np; ++t) {
        const std::int64_t i = t * kd + e;  // inner index of the product segment t
        panel[(i / 2) * 32 + i % 2] = piece(x, b[t]);
      }
    }
  }
}

void pack_v_split(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                  const SplitPolicy& s, std::uint16_t* dst, std::int64_t plane) {
  for (int k = 0; k < s.pieces; ++k) std::memset(dst + k * plane, 0, sizeof(std::uint16_t) * count_pad * dp);
  for (std::int64_t j = 0; j < count; ++j)
    for (std::int64_t e = 0; e < d; ++e) {
      const float x = element(src, j, e);
      const std::int64_t at = (j / 2) * 2 * dp + e * 2 + j % 2;
      for (int k = 0; k < s.pieces; ++k) dst[k * plane + at] = piece(x, k);
    }
}

void split_to_bf16(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld, const SplitPolicy& sp,
                   std::uint16_t* pb, std::int64_t plane) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < ncols; ++j)
      for (int k = 0; k < sp.pieces; ++k) pb[k * plane + i * ld + j] = piece(s[i * ld + j], k);
}

}  // namespace flatattn::cpu
