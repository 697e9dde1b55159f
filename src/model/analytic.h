// Closed forms of the FLAT paper's analytic claims (Kao et al., ASPLOS'23; docs/flat-model.md Sec. 1-3).
// The cost model (dataflow.h) computes the same quantities from mappings; tests check they agree.
// Notation: B batch, H heads, N sequence length, d head dim, D = H * d, b bytes per element.
#pragma once

#include <cmath>

#include "src/model/dataflow.h"

namespace flatattn::model::analytic {

/// Table 1, general form: on-chip elements x b of a FLAT tile (Bx, Hx, Rx):
/// b * Bx * Hx * (4 Rx d + 4 N d + Rx N)  (Q, O tiles and K, V double-buffered, one Rx x N logit tile).
inline double flat_buffer_bytes(double bx, double hx, double rx, double n, double d, double b) {
  return b * bx * hx * (4 * rx * d + 4 * n * d + rx * n);
}

/// Table 1 by granularity: M = 8BDN + BHN^2, B = 8DN + HN^2, H = 8Nd + N^2, R = 4Rd + 4Nd + RN (x b).
inline double flat_buffer_bytes(Granularity g, double batch, double heads, double n, double d, double r,
                                double b) {
  switch (g) {
    case Granularity::M: return flat_buffer_bytes(batch, heads, n, n, d, b);
    case Granularity::B: return flat_buffer_bytes(1, heads, n, n, d, b);
    case Granularity::H: return flat_buffer_bytes(1, 1, n, n, d, b);
    case Granularity::R: return flat_buffer_bytes(1, 1, r, n, d, b);
  }
  return 0;
}

/// Off-chip bytes of fused L + A when K/V stay resident: read Q, K, V and write O once: 4 B N D b.
inline double fused_traffic_bytes(double batch, double heads, double n, double d, double b) {
  return 4 * batch * n * heads * d * b;
}

/// Fused, with K/V re-fetched for every Rx-row tile: b * 2 B N D (1 + ceil(N / Rx)).
inline double fused_refetch_traffic_bytes(double batch, double heads, double n, double d, double rx, double b) {
  return b * 2 * batch * n * heads * d * (1 + std::ceil(n / rx));
}

/// Unfused: b (4 B N D + 2 B H N^2): L written and read back once; softmax_pass adds its own
/// round trip (another 2 B H N^2 b).
inline double unfused_traffic_bytes(double batch, double heads, double n, double d, double b, bool softmax_pass) {
  return b * (4 * batch * n * heads * d + 2 * batch * heads * n * n * (softmax_pass ? 2 : 1));
}

/// Operational intensity (FLOP/byte) of the unfused L operator: 2 B H N^2 d / (b (2 B H N d + B H N^2))
/// = 2 N d / (b (2 d + N)). B cancels: no reuse across the batch (paper Eq. 1).
inline double unfused_l_intensity(double batch, double heads, double n, double d, double b) {
  return 2 * batch * heads * n * n * d / (b * (2 * batch * heads * n * d + batch * heads * n * n));
}

/// Intensity of fused L + A: 4 B H N^2 d / (4 B H N d b) = N / b.
inline double fused_la_intensity(double batch, double heads, double n, double d, double b) {
  return 4 * batch * heads * n * n * d / (4 * batch * heads * n * d * b);
}

/// Ideal L + A runtime: 2 B H N^2 d MACs on PEs MAC units at f Hz.
inline double ideal_la_runtime_s(double batch, double heads, double n, double d, double pes, double freq_hz) {
  return 2 * batch * heads * n * n * d / (pes * freq_hz);
}

}  // namespace flatattn::model::analytic
