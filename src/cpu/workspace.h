// Scratch memory of the CPU engine: what each thread allocates, and its total, so the CLI can print it.
//
// Nothing is N x N. Forward, per thread: the packed fp32 K^T and V of one (batch, kv head) (2 Nk D, the
// FLAT paper's "4Nd" K/V term), the Q and O tiles (block_m x D each) and the logit tile: block_m x
// block_n for Flash, R x Nk for FLAT. Backward adds D_i = rowsum(dO o O) for every query row and head
// (one float each) and per-thread tiles of the same kinds; the fp32 backward's fused dQ (backward.cc fuses_dq)
// instead holds dQ, scale Q and dO of one kv head's query heads per thread (3 group Nq D floats, at most 64 MiB,
// else the dQ pass runs). All grow linearly in N.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flatattn/options.h"
#include "src/core/problem.h"
#include "src/cpu/amx/amx.h"
#include "src/cpu/policy.h"
#include "src/cpu/tile.h"

namespace flatattn::cpu {

/// One thread's forward tiles (fp32, 64-byte aligned).
struct ForwardScratch {
  float* kt;  ///< K^T panels of one (b, kv head): [Nk/kPanel][Dp][kPanel]
  float* v;   ///< V rows of one (b, kv head): [Nk][Dp]
  float* q;   ///< scaled Q tile, interleaved: [block_m][Dp]
  float* o;   ///< output accumulator: [block_m][Dp]
  float* s;   ///< logits / probabilities: [block_m][block_n] (Flash) or [R][Nk] (FLAT)
  float* m;   ///< running row max [block_m]
  float* l;   ///< running row sum [block_m]
  // The AMX path (src/cpu/amx/amx.h; kt, v and q are then unused and empty, tiles have
  // round_up(block_m, kAmxRows) rows): bf16 operands in the AMX layouts.
  // The AVX512-BF16 path (dpbf16 true) uses the same layouts and sizes.
  bool amx = false;
  bool dpbf16 = false;  ///< bf16 operands multiplied with AVX512-BF16 (src/cpu/amx/dpbf16.cc), not AMX tiles
  std::uint16_t* kb = nullptr;  ///< K panels (VNNI) of one (b, kv head): [Nk][Kd]
  std::uint16_t* vb = nullptr;  ///< V key pairs (VNNI) of one (b, kv head): [Nk][Dp]
  std::uint16_t* qb = nullptr;  ///< Q tile: [rows][Kd]
  std::uint16_t* pb = nullptr;  ///< P tile in bf16, same shape and leading dim as s
  // Operands split into bf16 pieces (SplitPolicy, amx.h; f16 inputs): qb and kb hold the products' pieces side
  // by side along the inner dim kq, vb and pb one plane per piece.
  SplitPolicy split = kSplitBf16;
  std::int64_t kq = 0;        ///< inner dim of qb and kb: products * Kd (Kd with one piece)
  std::int64_t vb_plane = 0;  ///< elements from one piece of V to the next
  std::int64_t pb_plane = 0;  ///< elements from one piece of P to the next
};

/// Carves one thread's forward scratch for plan (with a counting Carver, only sizes it).
ForwardScratch carve_forward(Carver& c, const Problem& p, const ForwardPlan& plan);

/// Row tiles of a forward pass with block_m rows each (the work items the threads share).
std::size_t forward_tiles(const Problem& p, int block_m);

/// Bytes of scratch one forward of p with `dataflow` allocates, all threads together (automatic resolves
/// through the policy exactly as forward() does).
std::size_t workspace_bytes(const Problem& p, Dataflow dataflow);

/// Bytes of scratch one backward of p allocates, all threads together.
std::size_t backward_workspace_bytes(const Problem& p);

}  // namespace flatattn::cpu
