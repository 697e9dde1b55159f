// Checking a kernel's output against the fp64 oracle (src/reference) under the correctness rule of
// src/check/rule.h (one implementation for the tests, `flatattn check` and this checker).
//
// Large problems are checked on sampled rows: output row i of head h of sequence b depends only on
// q[b, i, h], the keys lo(i)..hi(i) that row sees and their values, so the oracle runs on a one-row
// problem made of views into the same buffers (keys 0..hi(i), bottom-right window (hi-lo, 0)), which is
// exact for causal, windows of either alignment, softcap, sinks (the head's sink as a (1) tensor), GQA and
// varlen; not for ALiBi (its distance depends on the row's place: run/bench skip the check). dQ rows likewise depend only
// on their own row (dS_i = P_i * (dP_i - rowsum(dO_i * O_i))); dK/dV need every row and are checked
// on whole small problems by `flatattn check`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "flatattn/attention.h"
#include "src/check/rule.h"

namespace flatattn::cli {

using check::Judge;
using check::Verdict;

/// The verdict as JSON: pass, max_err, bound, naive_err, floor, rel_err, compared, nonfinite, unwritten,
/// sampled_rows.
nlohmann::json to_json(const Verdict& v);

/// Row i of query head h of sequence b (for varlen, i counts from the start of sequence b).
struct RowId {
  std::int64_t b = 0, h = 0, i = 0;
};

/// `count` distinct rows spread over (b, h, i): always the first row, the last row and the middle
/// one, the rest drawn from `seed`. Sequences with no rows are skipped.
std::vector<RowId> sample_rows(const ForwardArgs& args, const Options& options, int count, std::uint64_t seed);

/// Judges args.out (host views; out already written) on the given rows.
Verdict check_forward_rows(const ForwardArgs& args, const Options& options, const std::vector<RowId>& rows);

/// Judges args.dq (host views) on the given rows.
Verdict check_dq_rows(const BackwardArgs& args, const Options& options, const std::vector<RowId>& rows);

}  // namespace flatattn::cli
