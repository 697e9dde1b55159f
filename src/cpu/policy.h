// CPU policy: which forward dataflow runs and with which tiles. The whole policy is the table below plus
// the two plan_* functions; nothing else in src/cpu picks a tile size. Tiles change speed, never results'
// semantics (results are bitwise reproducible for a given plan, whatever the thread count).
//
// Measured on the development machine (Sapphire Rapids, 2 cores, 2 MiB L2 per core, AVX-512, Release,
// f32, B = 1, Hq = 12; bench/cpu/bench_cpu_fwd): see the notes on each row.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flatattn/options.h"
#include "src/core/problem.h"

namespace flatattn::cpu {

/// One row of the forward table: applies to head dims D <= max_d (first match).
struct ForwardPolicy {
  std::int64_t max_d;
  int flash_block_m;          ///< Flash: query rows per tile (multiple of kRowAlign)
  int flash_block_n;          ///< Flash: keys per K/V block (multiple of kPanel)
  int flat_max_rows;          ///< FLAT: R is the most rows whose logit tile fits the L2 budget, capped here
  std::int64_t flat_max_nk;   ///< automatic: FLAT up to this many keys per row, Flash beyond
};

// clang-format off
inline constexpr ForwardPolicy kForwardPolicy[] = {
  // max_d  Br   Bc   R cap  FLAT up to Nk
  {     64, 96, 256,     96,          4096},
  {    128, 96, 256,     96,          4096},
  {    256, 48, 256,     48,          2048},
  { 1 << 30, 24, 128,    24,          1024},  // any larger head dim (rare): small tiles keep Q/O in L2
};
// clang-format on

/// FLAT's logit tile (R x Nk fp32) plus its Q and O tiles may take this share of the core's L2; the rest
/// holds the K/V panels streaming through (FLAT paper Table 1, R-granularity: 4Rd + 4Nd + RN).
inline constexpr double kFlatL2Share = 0.5;
/// L2 bytes assumed when the OS does not report the size (sysconf and /sys both fail).
inline constexpr std::size_t kDefaultL2Bytes = std::size_t{1} << 20;

/// Backward tiles (FA2 Alg. 2): query rows per tile, keys per block of the dQ pass, keys per block of the
/// dK/dV pass (a multiple of kKeyAlignBwd).
struct BackwardPlan {
  int block_m = 48;
  int block_n = 128;
  int block_n_dkdv = 96;
};

/// A forward plan: what runs and with which tiles. For FLAT block_m = R and block_n = 0 (the whole
/// visible row: Nk keys; Report says Nk).
struct ForwardPlan {
  Dataflow dataflow = Dataflow::flash;
  int block_m = 0;
  int block_n = 0;
};

/// This core's L2 size in bytes: sysconf(_SC_LEVEL2_CACHE_SIZE), else
/// /sys/devices/system/cpu/cpu0/cache/index2/size, else kDefaultL2Bytes. Read once.
std::size_t l2_cache_bytes();

/// The table row for head dim d.
const ForwardPolicy& forward_policy(std::int64_t d);

/// FLAT's R for problem p: the largest multiple of kRowAlign (at least kRowAlign, at most the row's cap
/// and the rows of the longest sequence rounded up) whose R x Nk logit tile + Q/O tiles fit kFlatL2Share
/// of l2_bytes.
int flat_rows(const Problem& p, std::size_t l2_bytes);

/// The forward plan for p: `requested` flash or flat is honoured; automatic picks FLAT when the longest
/// key row is at most the table's flat_max_nk and the FLAT tile keeps at least kRowAlign rows in the
/// L2 budget, Flash otherwise. The one place the choice is made (the cost model's planner can replace it).
ForwardPlan plan_forward(const Problem& p, Dataflow requested);

/// The backward plan for p.
BackwardPlan plan_backward(const Problem& p);

}  // namespace flatattn::cpu
