// The case lists of the warp-specialized sm90 forward's suite (tests/cuda/test_sm90_ws.cc): shapes around its row
// tile and key block, key ranges that wrap the K/V ring, causal in both alignments, the score-transform variants
// (softcap, ALiBi), varlen and dropout, at a given head dim. Host-only (no GPU call): the suite runs them.
#pragma once

#include <cstdint>
#include <vector>

#include "tests/cuda/device_case.h"

namespace flatattn::testing {

/// small_case (B 2, Hq 2, Hkv 1: GQA, LSE) with the Flash dataflow asked for: the suite's base shape.
Case ws_base_case(DType dt, std::int64_t nq, std::int64_t nk, std::int64_t d);

/// Whether the warp-specialized kernel serves the case (else it must refuse it): not the additive bias; a varlen
/// case with at least one query row. Block-sparse cases are left to tests/cuda/test_sparse_ws.cc.
bool ws_serves(const Case& c);

/// Varlen cases at head dim d: empty and 1-row sequences, Nq != Nk per sequence (both ways), tiles that cross
/// into the next sequence's rows, key ranges that wrap the ring, causal in both alignments, a window, softcap,
/// ALiBi (its distances are per sequence) and sinks; GQA.
std::vector<Case> ws_varlen_cases(DType dt, std::int64_t d);

/// Softcap and ALiBi (the variants whose hooks are the seam's score transform) on batched cases at head dim d:
/// with and without causal (both alignments), a window, sinks, Nq != Nk.
std::vector<Case> ws_variant_cases(DType dt, std::int64_t d);

/// Dropout (the probability hook on the sequence's b, h, row and column) at head dim d: batched with causal (both
/// alignments), a window, GQA, sinks, softcap, Nq != Nk, a position in a longer sequence (dropout_row0/col0); varlen
/// with empty and 1-row sequences (the counter's b is the sequence).
std::vector<Case> ws_dropout_cases(DType dt, std::int64_t d);

/// Every case of the suite's sweeps for dtype dt: D = 64, 128, 256 around the tiles, the three lists above,
/// feature_mix and edge_cases where the kernel serves them, and zero-padded head dims (40 ... 248).
std::vector<Case> ws_cases(DType dt);

}  // namespace flatattn::testing
