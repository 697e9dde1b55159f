// One matrix-multiply operator on a spatial accelerator: how a buffer-level tiling and loop order
// turn into off-chip traffic, and how the PE array's spatial mapping turns into cycles.
// The analysis is the usual single-level reuse analysis (Timeloop/MAESTRO style; FLAT Sec. 6):
// an operand tile is re-fetched whenever a loop it depends on advances, or when a loop it does not
// depend on sits outside the innermost loop it does depend on.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "src/model/hardware.h"

namespace flatattn::model {

/// Loop dimensions of C[m x n] += A[m x k] * B[k x n].
enum class LoopDim : std::uint8_t { m, n, k };

/// What stays in the PE array while the innermost loop streams (FLAT Sec. 3: W/I/O-stationary):
/// output (C, k streams), weight (B, m streams), input (A, n streams).
enum class Stationarity : std::uint8_t { output, weight, input };

std::string_view name(Stationarity s);  ///< "os", "ws", "is"

/// `instances` independent products C = A * B of shape (m x k) * (k x n) (e.g. one per batch x head).
struct GemmShape {
  double instances = 1;
  std::int64_t m = 0, n = 0, k = 0;
};

/// Buffer-level tiling: tile sizes and the loop order over tiles (outermost first).
struct GemmTiling {
  std::array<LoopDim, 3> order{LoopDim::m, LoopDim::n, LoopDim::k};
  std::int64_t tm = 0, tn = 0, tk = 0;

  /// The innermost loop decides the stationary operand: k -> output, m -> weight, n -> input.
  [[nodiscard]] Stationarity stationarity() const;
  /// e.g. "os m-n-k 128x512x64".
  [[nodiscard]] std::string describe() const;
};

/// Off-chip traffic of one tiled operator, in elements summed over all instances.
struct GemmTraffic {
  double a_reads = 0, b_reads = 0, c_writes = 0, c_reads = 0;  ///< c_reads: partial sums read back
  double buffer_elems = 0;  ///< on-chip need: all three tiles, double-buffered
  [[nodiscard]] double total() const { return a_reads + b_reads + c_writes + c_reads; }
};

/// Reuse analysis of `tiling` on `shape` (edge tiles counted exactly).
GemmTraffic buffer_traffic(const GemmShape& shape, const GemmTiling& tiling);

/// PE-array work of the operator with stationarity `s` and tiles (tm, tn, tk): the two spatial
/// dimensions are folded onto pe_rows x pe_cols (a tile side smaller than the array leaves PEs idle),
/// the third streams temporally. output: (m, n) spatial, k temporal; weight: (k, n) spatial, m temporal;
/// input: (k, m) spatial, n temporal.
struct ArrayWork {
  double cycles = 0;         ///< streaming cycles plus one fill/drain (pe_rows + pe_cols)
  double onchip_elems = 0;   ///< buffer <-> array element transfers (operands in, results/partials out)
};
ArrayWork array_work(const Accelerator& acc, const GemmShape& shape, Stationarity s, std::int64_t tm,
                     std::int64_t tn, std::int64_t tk);

/// Multiply-accumulates of the operator.
inline double macs(const GemmShape& g) { return g.instances * double(g.m) * double(g.n) * double(g.k); }

}  // namespace flatattn::model
