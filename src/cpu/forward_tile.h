// One forward row tile: the unit of work of both dataflows (src/cpu/forward.cc schedules them).
#pragma once

#include <cstdint>

#include "src/core/problem.h"
#include "src/cpu/pack.h"
#include "src/cpu/policy.h"
#include "src/cpu/tile.h"
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

/// The bf16 tiles (AMX or AVX512-BF16) run in row slabs of at most kAmxSlab rows (src/cpu/forward_bf16.cc)
/// when the call has no probability hook (dropout needs the fp32 P) and is not block-sparse: true then.
bool bf16_slabs(const Problem& p);

/// Rows [r0, r0 + rs) of the tile (rs a multiple of kAmxRows) against the keys [k0, k0 + ncols) (k0 and ncols
/// multiples of kPanel): S into w.s, hooks and mask, the online-softmax step on w.m, w.l and the O rows
/// (bf16_softmax_step), P into w.pb, O += P V. Both use ld = ncols. FLAT calls it once per slab with the
/// slab's visible keys (m = -inf, l = 0 before), Flash once per slab and key block.
void bf16_slab(const Problem& p, const RowTile& tile, const ForwardScratch& w, std::int64_t r0, std::int64_t rs,
               std::int64_t k0, std::int64_t ncols);

/// The bf16 paths' products with w's operands (AMX or AVX512-BF16; SplitPolicy pieces, amx.h): S = scale Q K^T for
/// rows of qb (from its row r0) against the keys from k0; O += P V (P planes w.pb_plane apart) against the keys
/// from k0, one product per piece pair of split_pairs_pv (f16: 3, lo x lo dropped; S takes all 4 of split_pairs);
/// and the Q tile rows packed (with their pieces) into w.qb.
void bf16_qk(const ForwardScratch& w, std::int64_t r0, std::int64_t rows, std::int64_t k0, std::int64_t ncols,
             float scale, float* s, std::int64_t lds);
void bf16_pv(const ForwardScratch& w, const std::uint16_t* pb, std::int64_t ldp, std::int64_t rows, std::int64_t k0,
             std::int64_t ncols, std::int64_t dp, float* o, std::int64_t ldo);
void bf16_pack_q(const Problem& p, const Rows& q, const RowTile& tile, std::int64_t rows_pad, const ForwardScratch& w);

/// The keys of [k0, k1) that the real rows among [r0, r0 + rs) of the tile see, widened to panel bounds
/// (kPanel); empty when they see none there (the slab is skipped: its P would be all 0).
Range bf16_slab_keys(const Problem& p, const RowTile& tile, std::int64_t r0, std::int64_t rs, std::int64_t k0,
                     std::int64_t k1);

/// Shared epilogue: O = acc / l (0 for a row with no visible key) and LSE = m + log l (-inf for such a
/// row), stored for the real rows of the tile.
void finish_tile(const Problem& p, const FwdTensors& t, const RowTile& tile, const ForwardScratch& w);

}  // namespace flatattn::cpu
