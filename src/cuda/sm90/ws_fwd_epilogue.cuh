// The epilogue of the warp-specialized forward's consumer warpgroups: the row sums and LSE (common/softmax.cuh
// finalize_rows, the sinks), then O normalized and stored through each warp's own 16 rows of the Q tile
// (common/tile_io.cuh store_out: 16-byte row-contiguous global stores) and the LSE. v1: plain stores, no TMA
// store. Precondition: the warpgroup's last wgmma has retired (its Q rows are no longer read) and the Q load
// has completed (waited at the start of the consumer branch), so the copy engine no longer writes the tile.
#pragma once

#include <cstdint>

#include "src/cuda/common/block_info.cuh"
#include "src/cuda/common/params.h"
#include "src/cuda/common/score.cuh"
#include "src/cuda/common/softmax.cuh"
#include "src/cuda/common/tile_io.cuh"
#include "src/cuda/sm90/ws_fwd_mainloop.cuh"

namespace flatattn::cuda::sm90 {

/// warp_row0: the warp's first row within the CTA's Q tile (at generic address `sq`); row: this thread's
/// first row in the sequence; m0: the tile's first row.
template <class E, class S, class V>
FLATATTN_DEVICE void ws_consumer_epilogue(WsAcc<S::kDT>& acc, const FwdParams& p, const BlockInfo& bi, int h,
                                          unsigned char* sq, int m0, int warp_row0, int row, int lane) {
  float inv[1][2], lse[1][2];
  finalize_rows(acc.m, acc.l, inv, lse, p.mul);
  add_sinks(inv, lse, p.sinks, h);
  scale_output_for_dropout<V>(inv, p);
  store_lse(lse, p, bi, row, lane);
  auto* go = static_cast<std::uint16_t*>(p.o) + bi.o + m0 * p.o_n;
  store_out<E, typename S::TQ, 1, S::kDT>(acc.o, inv, sq, warp_row0, lane, go, p.o_n, bi.nq - m0, p.d);
}

}  // namespace flatattn::cuda::sm90
