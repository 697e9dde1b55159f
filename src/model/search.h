// Exhaustive map-space search (FLAT Sec. 6.3): for each dataflow, every mapping of its (small) space
// is costed and the fastest feasible one kept.
//   naive: one mapping (naive_mapping).
//   flex:  L and A independently: 6 loop orders x tiles (powers of two >= 8 and the full extent) per
//          dimension, with softmax fused into L when its tiles allow.
//   flat:  granularity M / B (Bx | B) / H (Hx | H) / R (Rx a power of two < N), x 3 x 3 stationarities.
//   flash: Br, Bc powers of two >= 16 (and the full extent), x 3 x 3 stationarities.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "src/model/dataflow.h"
#include "src/model/workload.h"

namespace flatattn::model {

/// Which stationarities the search may use (for L, A and the FC layers).
/// full (default): output, weight and input stationary.
/// paper: output and weight only, the space FLAT's own search used (FuseMax's replay of FLAT records a
///        stationarity per operator in {output, weight}); it keeps the head dim d on a spatial axis of
///        A = P V, which caps the cloud array at d / 256 for that stage.
struct MapSpace {
  bool output = true, weight = true, input = true;
  static MapSpace full() { return {}; }
  static MapSpace paper() { return {true, true, false}; }
  [[nodiscard]] bool allows(Stationarity s) const;
  [[nodiscard]] std::string_view name() const;  ///< "full", "paper" or "custom"
};

/// Parses "full" or "paper"; throws Error otherwise.
MapSpace parse_mapspace(std::string_view s);

/// A point of a dataflow's map space.
struct Mapping {
  DataflowKind dataflow = DataflowKind::flat;
  UnfusedMapping unfused{};  ///< naive, flex
  FlatMapping flat{};        ///< flat
  FlashMapping flash{};      ///< flash
  /// One line: e.g. "R-gran Bx=1 Hx=1 Rx=256 L:os A:is" or "L: os m-n-k 512x512x64 +softmax | A: ...".
  [[nodiscard]] std::string describe() const;
};

/// The best mapping of a dataflow, its cost, and how many mappings were costed.
struct Evaluated {
  Mapping mapping{};
  Cost cost{};
  std::int64_t mappings_costed = 0;
};

/// Cost of any mapping (dispatches on mapping.dataflow).
Cost cost_of(const Accelerator& acc, const AttnProblem& p, const Mapping& m);

/// Best mapping of `dataflow`. cost.feasible is false when no mapping fits the buffer.
Evaluated best_mapping(const Accelerator& acc, const AttnProblem& p, DataflowKind dataflow,
                       const MapSpace& space = MapSpace::full());

/// Best FLAT mapping restricted to one granularity.
Evaluated best_flat(const Accelerator& acc, const AttnProblem& p, Granularity only,
                    const MapSpace& space = MapSpace::full());

/// The FC layers of one transformer layer at sequence length n (Q, K, V, O projections, FF1, FF2),
/// each with its best unfused mapping: the same for every attention dataflow (FLAT fuses L and A only).
struct FcCost {
  double flops = 0, offchip_bytes = 0, runtime_s = 0, energy_j = 0;
};
FcCost best_fc(const Accelerator& acc, const Workload& w, std::int64_t n, const MapSpace& space = MapSpace::full());

/// The attention problem of a workload at sequence length n (Nq = Nk = n).
AttnProblem attn_problem(const Workload& w, std::int64_t n);

}  // namespace flatattn::model
