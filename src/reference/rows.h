// The oracle's inner loops on contiguous fp64 rows (reference.cc): the rows of one (sequence, head) of q, k, v
// or dO converted once to double by load_double (the values an element-wise read gives), keys packed in panels
// of kPanel for the dot products, and the products' accumulation with or without Precision::input's fp32
// rounding chosen at compile time. Every sum keeps the element-wise loop's order per output element: a dot
// product over ascending d, P V and dS K over ascending key j, P^T dO and dS^T Q over ascending query row i.
// The loops only change which elements are computed side by side, so every result is bitwise the same.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
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
inline constexpr std::int64_t kPanel = 16;

/// n rows of d doubles (row-major) as panels: element (j, e) at ((j / kPanel) * d + e) * kPanel + j % kPanel;
/// the last panel's missing rows are 0.
inline std::vector<double> pack_panels(const double* rows, std::int64_t n, std::int64_t d) {
  const std::int64_t panels = (n + kPanel - 1) / kPanel;
  std::vector<double> out(static_cast<std::size_t>(panels * d * kPanel), 0.0);
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t e = 0; e < d; ++e) out[((j / kPanel) * d + e) * kPanel + j % kPanel] = rows[j * d + e];
  return out;
}

/// Two doubles (two floats) as one value of GCC's / Clang's vector extension: element-wise IEEE operations on
/// the baseline vector registers of every 64-bit target; the panels' dot products keep their accumulators in
/// registers with them.
using Double2 = double __attribute__((vector_size(16)));
using Float2 = float __attribute__((vector_size(8)));

/// accum<Round> on each of two elements.
template <bool Round>
inline Double2 accum2(Double2 acc, Double2 x) {
  if constexpr (Round) {
    return __builtin_convertvector(__builtin_convertvector(acc + x, Float2), Double2);
  } else {
    return acc + x;
  }
}

/// acc[c] = sum over ascending e of x[e] * panel(c, e) for the kPanel keys of one panel (d-major, as
/// pack_panels), each sum started at 0 and accumulated by accum<Round>: the element-wise dot product of
/// x with each key, for kPanel keys side by side (eight independent chains of additions in flight).
template <bool Round>
inline void dot_panel(const double* x, const double* panel, std::int64_t d, double* acc) {
  static_assert(kPanel == 16, "eight Double2 accumulators");
  Double2 a0 = {0, 0}, a1 = {0, 0}, a2 = {0, 0}, a3 = {0, 0}, a4 = {0, 0}, a5 = {0, 0}, a6 = {0, 0}, a7 = {0, 0};
  for (std::int64_t e = 0; e < d; ++e) {
    const Double2 xe = {x[e], x[e]};
    const double* pe = panel + e * kPanel;
    Double2 p[8];
    std::memcpy(p, pe, sizeof p);
    a0 = accum2<Round>(a0, xe * p[0]);
    a1 = accum2<Round>(a1, xe * p[1]);
    a2 = accum2<Round>(a2, xe * p[2]);
    a3 = accum2<Round>(a3, xe * p[3]);
    a4 = accum2<Round>(a4, xe * p[4]);
    a5 = accum2<Round>(a5, xe * p[5]);
    a6 = accum2<Round>(a6, xe * p[6]);
    a7 = accum2<Round>(a7, xe * p[7]);
  }
  const Double2 out[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
  std::memcpy(acc, out, sizeof out);
}

/// Rows summed in one pass of add_terms (the chunk of a sum over rows whose terms are gathered first).
inline constexpr std::int64_t kTerms = 32;

/// acc[e] = accum<Round>(... accum<Round>(acc[e], w[0] * y[0][e]) ..., w[n-1] * y[n-1][e]) for e in [0, d):
/// n terms of a sum over rows (P V, dS K, P^T dO, dS^T Q) added to every element of an output row in the
/// order given, four at a time per element (acc[e] kept in a register between them). acc must not overlap
/// any y[t].
template <bool Round>
inline void add_terms(double* __restrict acc, const double* w, const double* const* y, std::int64_t n, std::int64_t d) {
  std::int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    const double w0 = w[t], w1 = w[t + 1], w2 = w[t + 2], w3 = w[t + 3];
    const double *y0 = y[t], *y1 = y[t + 1], *y2 = y[t + 2], *y3 = y[t + 3];
    const Double2 v0 = {w0, w0}, v1 = {w1, w1}, v2 = {w2, w2}, v3 = {w3, w3};
    std::int64_t e = 0;
    for (; e + 2 <= d; e += 2) {  // two elements per step, each with its own chain
      Double2 a, x0, x1, x2, x3;
      std::memcpy(&a, acc + e, sizeof a);
      std::memcpy(&x0, y0 + e, sizeof x0);
      std::memcpy(&x1, y1 + e, sizeof x1);
      std::memcpy(&x2, y2 + e, sizeof x2);
      std::memcpy(&x3, y3 + e, sizeof x3);
      a = accum2<Round>(a, v0 * x0);
      a = accum2<Round>(a, v1 * x1);
      a = accum2<Round>(a, v2 * x2);
      a = accum2<Round>(a, v3 * x3);
      std::memcpy(acc + e, &a, sizeof a);
    }
    for (; e < d; ++e) {
      double a = acc[e];
      a = accum<Round>(a, w0 * y0[e]);
      a = accum<Round>(a, w1 * y1[e]);
      a = accum<Round>(a, w2 * y2[e]);
      a = accum<Round>(a, w3 * y3[e]);
      acc[e] = a;
    }
  }
  for (; t < n; ++t) {
    const double wt = w[t];
    const double* __restrict yt = y[t];
    for (std::int64_t e = 0; e < d; ++e) acc[e] = accum<Round>(acc[e], wt * yt[e]);
  }
}

/// The nonzero terms of a chunk of a sum over rows: weights and their rows, in the order added.
struct Terms {
  double w[kTerms];
  const double* y[kTerms];
  std::int64_t n = 0;
  void push(double weight, const double* row) { w[n] = weight, y[n++] = row; }
  void add(double weight, const double* row) {  // a zero weight skipped, as the element-wise loops skip it
    if (weight != 0) push(weight, row);
  }
  template <bool Round>
  void flush(double* acc, std::int64_t d) {
    add_terms<Round>(acc, w, y, n, d);
    n = 0;
  }
};

}  // namespace flatattn::ref
