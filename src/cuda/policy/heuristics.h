// Host heuristics in plain C++: whether FLAT can hold a problem's rows, and the automatic choice
// between the FLAT and Flash kernels. choose_dataflow is the ONE place that choice is made; the cost
// model's planner (src/model/planner.h) is meant to replace its measured table.
#pragma once

#include <cstdint>

#include "flatattn/options.h"
#include "src/cuda/policy/tile_size.h"

namespace flatattn::cuda {

/// What the choice looks at.
struct Workload {
  std::int64_t batch = 1, hq = 1;
  std::int64_t nq = 0, nk = 0;  ///< varlen: the longest lengths
  int d = 0;                    ///< the kernel's head dim (after padding)
  bool masked = false;          ///< causal or window
};

/// True when the FLAT kernel of family f and head dim d holds a whole key row of nk.
bool flat_fits(Family f, int d, std::int64_t nk);

/// Flash or FLAT for Dataflow::automatic, from the measured table in heuristics.cc.
Dataflow choose_dataflow(Family f, const Workload& w);

}  // namespace flatattn::cuda
