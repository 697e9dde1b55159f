// Cost of one attention layer (L = Q K^T, softmax, A = P V for every batch x head) under each
// dataflow on a spatial accelerator: FLOPs, off-chip bytes, on-chip buffer need with spilling,
// compute time with the PE array's spatial mapping, memory time, runtime, utilization, energy proxy.
//
// Dataflows (FLAT, Kao et al., ASPLOS'23, Sec. 3-6):
//   naive: unfused; L, softmax and A each go through off-chip memory; L and A weight-stationary with
//          tiles the size of the PE array.
//   flex:  unfused with the best intra-operator mapping (loop order, stationarity, tiles); softmax is
//          fused into L's epilogue when L's output tile spans whole rows (tn = Nk), else it is its own
//          off-chip round trip.
//   flat:  L -> softmax -> A fused per FLAT tile (Bx, Hx, Rx) at M/B/H/R granularity: Rx full logit
//          rows on chip, exact softmax, K/V of the tile's heads resident (Table 1 buffer).
//   flash: block tiling Br x Bc with online softmax (Dao et al., NeurIPS'22, Alg. 1): O(1)-in-N state,
//          K/V re-read per query block unless they fit on chip, plus the rescaling work.
// Timing: per operator (unfused) or per tile (fused), time = max(compute, SFU, off-chip, on-chip)
// with double buffering (FLAT's roofline per tile); unfused operators run one after another.
// The first tile's inputs and the last tile's output are not overlapped (cold start, tailing).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "src/model/gemm.h"
#include "src/model/hardware.h"

namespace flatattn::model {

enum class DataflowKind : std::uint8_t { naive, flex, flat, flash };

std::string_view name(DataflowKind d);  ///< "naive", "flex", "flat", "flash"
/// Parses a dataflow name; throws Error listing the valid ones.
DataflowKind parse_dataflow(std::string_view s);

/// FLAT tile granularity (Sec. 4.2): M = whole batch and heads, B = Bx samples, H = Hx heads, R = Rx rows.
enum class Granularity : std::uint8_t { M, B, H, R };
std::string_view name(Granularity g);  ///< "M", "B", "H", "R"

/// The attention of one layer: every (b, h) computes L = Q K^T (nq x nk, reduction d) and A = P V.
struct AttnProblem {
  std::int64_t batch = 1, heads = 1, kv_heads = 1, nq = 1, nk = 1, d = 64;
  int elem_bytes = 2;
  [[nodiscard]] double bh() const { return double(batch) * double(heads); }
  /// L + A multiply-accumulates: 2 * B * H * nq * nk * d.
  [[nodiscard]] double macs() const { return 2.0 * bh() * double(nq) * double(nk) * double(d); }
};

/// naive and flex: the tilings of L and A and whether softmax rides in L's epilogue.
struct UnfusedMapping {
  GemmTiling l, a;
  bool softmax_fused = false;
};

/// flat: the FLAT tile and the array's stationarity for the L and A stages.
struct FlatMapping {
  Granularity gran = Granularity::R;
  std::int64_t bx = 1, hx = 1, rx = 1;
  Stationarity l_stat = Stationarity::output, a_stat = Stationarity::output;
};

/// flash: query block Br, key block Bc, stationarity of the L and A stages.
struct FlashMapping {
  std::int64_t br = 64, bc = 64;
  Stationarity l_stat = Stationarity::output, a_stat = Stationarity::output;
};

/// Cost of one mapping. Times in seconds, sizes in bytes, energy in joules (proxy).
struct Cost {
  bool feasible = true;
  std::string infeasible_reason;
  double flops = 0;           ///< 2 x MACs of L and A (softmax excluded)
  double offchip_bytes = 0;
  double onchip_bytes = 0;    ///< buffer <-> PE array traffic
  double buffer_bytes = 0;    ///< on-chip need of the mapping (FLAT: Table 1) before spilling
  double spilled_bytes = 0;   ///< part of buffer_bytes that does not fit and goes off-chip
  double compute_s = 0;       ///< PE array busy time incl. idle PEs of the spatial mapping and fill/drain
  double sfu_s = 0;           ///< special-function unit (softmax)
  double memory_s = 0;        ///< off-chip bytes / off-chip bandwidth
  double onchip_s = 0;        ///< on-chip bytes / on-chip bandwidth
  double runtime_s = 0;
  double ideal_s = 0;         ///< MACs / (PEs x f): FLAT's Runtime_ideal
  double utilization = 0;     ///< ideal_s / runtime_s
  double energy_j = 0;        ///< proxy: energy_pj constants x counts
};

/// Cost of naive/flex mappings. Infeasible (feasible = false) when a tile does not fit the buffer or
/// softmax_fused is set without whole output rows.
Cost cost_unfused(const Accelerator& acc, const AttnProblem& p, const UnfusedMapping& m);
/// Cost of a FLAT mapping; bx must divide batch and hx divide heads. Spills (logit tile, then resident
/// K/V) when the Table 1 buffer does not fit; infeasible only when Q/O tiles plus a minimal K/V stream
/// do not fit.
Cost cost_flat(const Accelerator& acc, const AttnProblem& p, const FlatMapping& m);
/// Cost of a Flash mapping; infeasible when the block state does not fit the buffer.
Cost cost_flash(const Accelerator& acc, const AttnProblem& p, const FlashMapping& m);

/// The naive mapping: L and A weight-stationary (loop order n-k-m) with tiles the size of the PE array
/// (halved until they fit the buffer), softmax a separate pass.
UnfusedMapping naive_mapping(const Accelerator& acc, const AttnProblem& p);

}  // namespace flatattn::model
