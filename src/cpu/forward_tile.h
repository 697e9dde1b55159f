// One forward row tile: the unit of work of both dataflows (src/cpu/forward.cc schedules them).
#pragma once

#include <cstdint>

#include "src/core/problem.h"
#include "src/cpu/policy.h"
#include "src/cpu/workspace.h"

namespace flatattn::cpu {

/// Rows [i0, i0 + rows) of query head h of sequence b (sp: its offsets and lengths).
struct RowTile {
  std::int64_t b, h, i0, rows;
  SeqSpan sp;
};


/// Flash dataflow (FlashAttention-2, Sec. 3.1): the Q tile meets the visible keys block_n at a time;
/// online softmax keeps a running max m and sum l per row and rescales the partial O when m grows;
/// one 1/l at the end. Blocks outside the visible range are never touched; only rows that straddle
/// the mask's boundary inside a block are masked. Expects w.kt / w.v to hold the tile's (b, kv head).
void flash_tile(const Problem& p, const FwdTensors& t, const ForwardPlan& plan, const RowTile& tile,
                const ForwardScratch& w);

/// FLAT dataflow (Kao et al., ASPLOS'23, Sec. 4, R-granularity): the R x (visible keys) logit block is
/// computed whole, soft-maxed exactly per row (max, exp and sum, one division), then multiplied by V;
/// output stationary, no rescaling. Expects w.kt / w.v to hold the tile's (b, kv head).
void flat_tile(const Problem& p, const FwdTensors& t, const RowTile& tile, const ForwardScratch& w);

/// Shared epilogue: O = acc / l (0 for a row with no visible key) and LSE = m + log l (-inf for such a
/// row), stored for the real rows of the tile.
void finish_tile(const Problem& p, const FwdTensors& t, const RowTile& tile, const ForwardScratch& w);

}  // namespace flatattn::cpu
