// Sparse workloads of the CLI (--density, --block, --global; issue 16): the block lists and global positions
// of a Workload, built with the checks' generator (src/check/sparse_case.h, the one `flatattn check`'s sparse
// cases use) and, for local + global, the library's own derivation (src/core/sparse_lists.h), plus what the
// mask leaves to compute (the visited blocks and visible pairs that the FLOP count of run/bench uses).
//
// The three masks (include/flatattn/sparse.h, docs/sparse.md):
//   --density P            random block lists: each block_q x block_kv block listed with probability P, all
//                          partial, so the band of Options (--causal, --window) still decides inside a block;
//   --global G [--window]  local + global (Longformer): the library derives the lists (128 x 128 blocks)
//                          from the window and the G global positions;
//   both                   BigBird: the random blocks listed as full (every pair visible) plus the local +
//                          global blocks; non-causal only (a full block above the diagonal sees the future).
// Lists and positions are the same for every sequence and head (broadcast B' = H' = 1) and come from the
// workload's --seed (the checks' seed ^ 7), so every process of a run rebuilds the same mask.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/workload.h"
#include "src/check/case.h"

namespace CLI {
class App;
class Validator;
}  // namespace CLI

namespace flatattn::cli {

/// Adds --density P, --block Q[,KV] and --global G to `app` (run, bench and check share them; the values are
/// checked as typed, the combinations by resolve_sparse).
void add_sparse_flags(CLI::App& app, WorkloadFlags& f);

/// The --density validator: a share P with 0 < P <= 1 (also `flatattn model plan --density`).
CLI::Validator density_validator();

/// Sets w.density, w.block_q/block_kv and w.globals from the flags and checks them against the resolved
/// shape (check_sparse). Throws UsageError: --block without --density, and check_sparse's cases.
void resolve_sparse(const WorkloadFlags& f, Workload& w);

/// Throws UsageError naming --global unless 1 <= g <= min(nq, nk) (the positions are distinct positions of
/// the sequence). g = 0 (off) passes.
void check_global_count(std::int64_t g, std::int64_t nq, std::int64_t nk);

/// G global positions spread evenly over a sequence of n positions: floor(g n / G) for g < G (needs
/// 1 <= G <= n; strictly increasing).
std::vector<std::int32_t> global_positions(std::int64_t g, std::int64_t n);

/// The workload as a check::Case (its shape with `batch` sequences (0: w.batch), dtype, Options, sinks flag,
/// and its sparse mask as a check::SparseCase).
check::Case sparse_case(const Workload& w, std::int64_t batch = 0);

/// The mask tensors of w (w.sparse()): i32 kv lists (1, 1, NQB, NKB) partial and full, and the globals (1, G);
/// without --density the lists are left to the library (SparseCase::derive). q, k, v are not allocated.
check::CaseTensors sparse_lists(const Workload& w);

/// What the mask of w leaves, for one (sequence, head) (every one has the same mask).
struct SparseStats {
  std::int64_t blocks_total = 0;    ///< NQB x NKB (block_q x block_kv blocks of the Nq x Nk scores)
  std::int64_t blocks_visited = 0;  ///< blocks in the lists (partial or full): the ones the kernels visit
  double visible_pairs = 0;         ///< (row, key) pairs the mask leaves visible (all inside visited blocks)
  double block_pairs = 0;           ///< (row, key) pairs of the visited blocks, whole (clipped to Nq x Nk)
  [[nodiscard]] double visited_fraction() const {
    return blocks_total > 0 ? static_cast<double>(blocks_visited) / static_cast<double>(blocks_total) : 0.0;
  }
};

/// Oracle work of one sequence of w for a whole-problem check: the fp64 oracle and the naive low-precision
/// yardstick build the whole Nq x Nk element mask and score every pair (flops, counted 4 D per pair and head).
double oracle_flops_per_sequence(const Workload& w);
/// Above this many oracle flops (minutes of host fp64 work) a sequence is not checked whole: `run` reports it
/// as not checked, `check` refuses the workload.
inline constexpr double kOracleLimit = 2e10;

/// Replaces the mask tensors of c (a make_case of sparse_case(w, ...)) by those of `mask` (sparse_lists(w)):
/// the lists and globals the run of w uses, BigBird's added local + global blocks included. c's q lists (if
/// any) are left alone: callers that replace the kv lists let the library derive the transpose.
void use_mask(check::CaseTensors& c, const check::CaseTensors& mask);

/// Counts the visited blocks and visible pairs of w's mask (the element rule evaluated on the listed blocks
/// only). Cost O(pairs of the partial blocks); dense workloads: every block visited, forward_flops' pairs.
SparseStats sparse_stats(const Workload& w);

/// Throws UsageError (naming the flag, the value, the limit and the fix) when the sparse flags do not fit
/// the resolved workload: --global above min(Nq, Nk), --density with --global and --causal.
void check_sparse(const Workload& w);

/// " density=0.25 block=128x128", " global=8", both, or "" (for Workload::features_str).
std::string sparse_str(const Workload& w);

/// The report lines of a sparse workload (run/bench text output): the mask, its seed, the visited blocks
/// and their fraction, and (with_flops: run, bench) how FLOPs are counted.
std::string sparse_report(const Workload& w, const SparseStats& st, bool with_flops = true);

/// The same as JSON: {"mask", "seed", "blocks_total", "blocks_visited", "visited_fraction", "visible_pairs",
/// "block_pairs", "flops_counted"} (per sequence and head).
nlohmann::json sparse_json(const Workload& w, const SparseStats& st);

}  // namespace flatattn::cli
