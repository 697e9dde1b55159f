// `flatattn run --decode`: one decode step (forward_kvcache: q_len Nq per sequence against a paged KV cache,
// one new token appended in place) on the workload's device, checked against the fp64 oracle, with time and
// bandwidth (the KV bytes the step reads over its time; the physical limit of decoding).
#pragma once

#include <cstdint>

#include "cli/workload.h"

namespace flatattn::cli {

struct DecodeFlags {
  std::int64_t page_size = 16;  ///< tokens per page
  std::int64_t nq = 1;          ///< query tokens per sequence (1: decode; more: speculative decoding)
  int num_splits = 0;           ///< 0: the library's choice
  int reps = 10, warmup = 2;
  bool check = true;
  bool json = false;
};

/// Runs the decode workload `w` (w.nk = the context: tokens in each sequence's cache after the append);
/// prints the result; throws CommandFailed{1} when the check fails.
void run_decode(const Workload& w, const DecodeFlags& f);

}  // namespace flatattn::cli
