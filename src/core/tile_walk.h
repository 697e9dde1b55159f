// The walk of a persistent forward kernel over its tiles (host and device, plain C++): the grid holds at most one CTA
// per SM, CTA x takes the work units x, x + G, x + 2G, ... (G = the grid, a static stride: every role of the CTA
// computes the same sequence, no atomic counter, no shared state), and a unit is one tile, or two (below), named by
// its linear index in the forward kernels' tile order (src/cuda/common/tile_coord.cuh: sequence, head, then query
// blocks heaviest first). One place for this arithmetic: the CUDA kernel walks it (src/cuda/sm90/ws_tile_scheduler.cuh,
// FlashAttention-3, Shah et al. 2024, Sec. 3) and the cost model predicts by walking it (src/model/gpu_kernel.cc).
//
// Pairs (causal-like masks: a tile's key blocks grow with its query block): a static stride over single tiles in
// that order gives every CTA the same few query blocks of each head when G and the blocks per head share factors
// (N = 2k, D = 128: 16 blocks per head, G = 132: a CTA's blocks are {15, 11, 7, 3} or {12, 8, 4, 0}, 160 vs 112
// blocks of work, the longest 1.19x the mean; the hardware's own dynamic order is 1.07x). A unit of two tiles of one
// head, query blocks n_m - 1 - j then j (the heaviest first), has the same work for every j (n_m + 1 blocks), so the
// stride balances the units (1.03x the mean on that shape; the middle block of an odd n_m is a unit of its own, after
// all pairs), and consecutive units stay on the same heads (their K/V shared in L2). Pairs only when there are at
// least two tiles per CTA (else a CTA would hold two tiles where an idle SM could take one) and the mask is
// causal-like (non-causal tiles are equal: pairs would only coarsen the last wave).
#pragma once

#include <cstdint>

#include "src/core/mask.h"  // FLATATTN_HD

namespace flatattn {

struct TileWalk {
  int n_m = 0;       ///< query blocks per (head, sequence): TileCoord's n_m_blocks
  int units = 0;     ///< work units (the grid walks them by its stride)
  int pairs = 0;     ///< pairs of query blocks per (head, sequence): n_m / 2 with pairs, else 0
  int pair_units = 0;  ///< units that are pairs: pairs * heads * sequences (they come first)

  /// tiles = n_m * Hq * B; grows: the mask makes a tile's key range grow with its query block (causal, no left
  /// window bound); sms: the device's SMs (or the grid's cap).
  static TileWalk make(int n_m, std::int64_t tiles, bool grows, int sms) {
    TileWalk s;
    s.n_m = n_m;
    const bool paired = grows && n_m >= 2 && tiles >= 2 * static_cast<std::int64_t>(sms);
    const std::int64_t hb = n_m > 0 ? tiles / n_m : 0;
    s.pairs = paired ? n_m / 2 : 0;
    s.pair_units = static_cast<int>(s.pairs * hb);
    s.units = static_cast<int>(paired ? s.pair_units + (n_m % 2) * hb : tiles);
    return s;
  }
  /// The grid: one CTA per SM at most, none idle.
  [[nodiscard]] int grid(int sms) const { return units < sms ? units : sms; }

  /// A CTA's place in its walk: unit u (unsigned: u + G stays exact up to units = 2^31 - 1), part 0 or 1 (the second
  /// tile of a pair).
  struct Cursor {
    unsigned u;
    int part;
  };
  /// CTA bx's first place (the kernel: blockIdx.x).
  FLATATTN_HD Cursor start(unsigned bx) const { return {bx, 0}; }

  /// The CTA's next tile (linear index in TileCoord's order) into t, grid: G (the kernel: gridDim.x); false when its
  /// walk is over.
  FLATATTN_HD bool next(Cursor& c, int& t, unsigned grid) const {
    if (c.u >= static_cast<unsigned>(units)) return false;
    const int u = static_cast<int>(c.u);
    if (u < pair_units) {
      const int hb = u / pairs, j = u - hb * pairs;
      // query block n_m - 1 - j (linear offset j in TileCoord's order), then block j (offset n_m - 1 - j)
      t = hb * n_m + (c.part == 0 ? j : n_m - 1 - j);
      if (c.part == 0) {
        c.part = 1;
        return true;
      }
    } else {
      // unpaired: the unit is the tile; paired and n_m odd: the middle block (n_m - 1) / 2 of (head, sequence)
      t = pairs == 0 ? u : (u - pair_units) * n_m + pairs;
    }
    c.part = 0;
    c.u += grid;
    return true;
  }
};

}  // namespace flatattn
