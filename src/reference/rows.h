// The oracle's inner loops on contiguous fp64 rows (reference.cc): the rows of one (sequence, head) of q, k, v
// or dO converted once to double by load_double (the values an element-wise read gives), keys packed in panels
// of kPanel for the dot products, and the products' accumulation with or without Precision::input's fp32
// rounding chosen at compile time. Every sum keeps the element-wise loop's order per output element: a dot
// product over ascending d, P V and dS K over ascending key j, P^T dO and dS^T Q over ascending query row i.
// The loops only change which elements are computed side by side, so every result is bitwise the same.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "src/core/half.h"
#include "src/core/problem.h"

namespace flatattn::ref {

/// A CPU tensor of (sequence-row, head, d) addressing (row_offset of src/core/problem.h), read and written
/// in double; d is contiguous.
struct View {
  void* data;
  DType dtype;
  RowStrides s;
};

/// acc + x, in double for the oracle (Round false), or rounded to float after the add for Precision::input
/// (Round true): a framework's naive attention accumulates its matrix products in fp32 whatever the storage
/// dtype.
template <bool Round>
inline double accum(double acc, double x) {
  if constexpr (Round) {
    return static_cast<double>(static_cast<float>(acc + x));
  } else {
    return acc + x;
  }
}

/// Rows [n0, n1) of sequence b (first packed row seq_row0 when varlen), head h of t as (n1 - n0) x p.d
/// doubles, row-major, into dst: element d of row n is load_double of (b, n, h, d).
inline void load_rows(const Problem& p, const View& t, std::int64_t b, std::int64_t seq_row0, std::int64_t n0,
                      std::int64_t n1, std::int64_t h, double* dst) {
  const std::int64_t d = p.d;
  for (std::int64_t n = n0; n < n1; ++n) {
    const std::int64_t off = row_offset(p, t.s, b, seq_row0, n, h);
    double* o = dst + (n - n0) * d;
    if (t.dtype == DType::f64) {
      const double* src = static_cast<const double*>(t.data) + off;
      std::copy(src, src + d, o);
    } else if (t.dtype == DType::f32) {
      const float* src = static_cast<const float*>(t.data) + off;
      for (std::int64_t e = 0; e < d; ++e) o[e] = static_cast<double>(src[e]);
    } else {
      for (std::int64_t e = 0; e < d; ++e) o[e] = load_double(t.data, t.dtype, off + e);
    }
  }
}

/// The same rows in a new vector.
inline std::vector<double> rows_of(const Problem& p, const View& t, std::int64_t b, std::int64_t seq_row0,
                                   std::int64_t n0, std::int64_t n1, std::int64_t h) {
  std::vector<double> r(static_cast<std::size_t>((n1 - n0) * p.d));
  load_rows(p, t, b, seq_row0, n0, n1, h, r.data());
  return r;
}

/// Keys side by side in the dot products (one panel: kPanel keys x d, d-major).
inline constexpr std::int64_t kPanel = 8;

/// n rows of d doubles (row-major) as panels: element (j, e) at ((j / kPanel) * d + e) * kPanel + j % kPanel;
/// the last panel's missing rows are 0.
inline std::vector<double> pack_panels(const double* rows, std::int64_t n, std::int64_t d) {
  const std::int64_t panels = (n + kPanel - 1) / kPanel;
  std::vector<double> out(static_cast<std::size_t>(panels * d * kPanel), 0.0);
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t e = 0; e < d; ++e) out[((j / kPanel) * d + e) * kPanel + j % kPanel] = rows[j * d + e];
  return out;
}

/// acc[c] = sum over ascending e of x[e] * panel(c, e) for the kPanel keys of one panel (d-major, as
/// pack_panels), each sum started at 0 and accumulated by accum<Round>: the element-wise dot product of
/// x with each key.
template <bool Round>
inline void dot_panel(const double* x, const double* panel, std::int64_t d, double* acc) {
  double a[kPanel] = {};
  for (std::int64_t e = 0; e < d; ++e) {
    const double xe = x[e];
    const double* pe = panel + e * kPanel;
    for (std::int64_t c = 0; c < kPanel; ++c) a[c] = accum<Round>(a[c], xe * pe[c]);
  }
  std::copy(a, a + kPanel, acc);
}

/// acc[e] = accum<Round>(acc[e], w * y[e]) for e in [0, d): one term of a sum over rows (P V, dS K, P^T dO,
/// dS^T Q) added to every element of an output row.
template <bool Round>
inline void add_scaled(double* acc, double w, const double* y, std::int64_t d) {
  for (std::int64_t e = 0; e < d; ++e) acc[e] = accum<Round>(acc[e], w * y[e]);
}

}  // namespace flatattn::ref
