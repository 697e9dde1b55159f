// The hop cover of ring attention: which global positions each rank holds (the layout's segments), and per ring
// step which (query rows, key rows) blocks of two shards see each other under the global causal/window mask, as
// top-left aligned forward()/backward() calls. The C++ twin of python/flatattn/distributed/{layout,_blocks}.py
// (same rules; host arithmetic only, so the Python side could call it).
//
// Global mask (docs/design.md, Semantics 2, on the full square sequence): key position kp is visible to query
// position qp when -left <= kp - qp <= right (a side of -1 unbounded; causal sets right = 0). For a query run at
// global gq and a key run at gk, local rows i, j see each other when j - i in [lo, hi], lo = gq - gk - left,
// hi = gq - gk + right. A block is skipped when no (i, j) meets that, run unmasked when all do, and otherwise cut
// (rows before -hi see no key, keys before lo no query) so that the band lies on the cut block's diagonal, where
// forward()'s window (left, right) with top-left alignment expresses it.
#pragma once

#include <cstdint>
#include <vector>

#include "flatattn/context_parallel.h"

namespace flatattn::cp {

/// A run of positions a rank holds: global start, local start, length, and the document it lies in (document
/// masks: positions of different documents never see each other; 0 without documents).
struct Segment {
  std::int64_t global = 0, local = 0, length = 0;
  std::int64_t doc = 0;
  bool operator==(const Segment&) const = default;
};

/// One attention call: local query rows [q0, q1) against the visiting shard's key rows [k0, k1), top-left
/// aligned, with this causal flag and window (-1: unbounded).
struct Block {
  std::int64_t q0 = 0, q1 = 0, k0 = 0, k1 = 0;
  bool causal = false;
  std::int64_t window_left = -1, window_right = -1;
  /// Global positions of rows q0 and keys k0 (dropout: Options::dropout_row0/col0); -1 for a fused call over runs
  /// that are not adjacent in the global sequence (plan_hop with fuse = false never makes one).
  std::int64_t row0 = -1, col0 = -1;
  /// The document both runs lie in (Segment::doc; 0 without documents): dropout under a document mask numbers the
  /// stream per document (Options::dropout_batch0) from the document's start (ring.cc, block_options).
  std::int64_t doc = 0;
  bool operator==(const Block&) const = default;
};

/// The runs `rank` of `world` holds with n_local tokens (zigzag: n_local even), in local order. With document
/// boundaries `cu_seqlens` (the whole sequence's, S + 1 values from 0 to world n_local, non-decreasing; empty:
/// one document), runs are split where a document starts, each carrying its document's index.
std::vector<Segment> segments(SeqLayout layout, int rank, int world, std::int64_t n_local,
                              const std::vector<std::int64_t>& cu_seqlens = {});

/// The Blocks of one hop: local query runs against visiting key runs under the global mask (causal; window
/// sides -1 unbounded; runs of different documents see nothing of each other). Fused into one call where that
/// gives the same mask: every visible pair unmasked and forming one rectangle of adjacent runs, or a shard of
/// one document against itself under a plain causal mask. fuse = false (dropout): one call per visible pair of
/// runs, each with its global position.
std::vector<Block> plan_hop(const std::vector<Segment>& q_segs, const std::vector<Segment>& k_segs, bool causal,
                            std::int64_t window_left, std::int64_t window_right, bool fuse = true);

/// Every rank's Blocks per ring step (at step t rank r holds the K/V shard of rank (r - t) mod W), cut after the
/// last step at which any rank has work (a window on contiguous shards never needs the far shards, so neither
/// their transfers nor their steps happen). plan[r][t]; every rank has the same number of steps (>= 1).
/// cu_seqlens: document boundaries as in segments() (document masks; empty: none).
using RingPlan = std::vector<std::vector<std::vector<Block>>>;
RingPlan plan_ring(SeqLayout layout, int world, std::int64_t n_local, bool causal, std::int64_t window_left,
                   std::int64_t window_right, const std::vector<std::int64_t>& cu_seqlens = {}, bool fuse = true);

}  // namespace flatattn::cp
