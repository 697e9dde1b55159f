// CPU policy: which forward dataflow runs and with which tiles. The whole policy is the table below plus
// the two plan_* functions; nothing else in src/cpu picks a tile size. Tiles change speed, never results'
// semantics (results are bitwise reproducible for a given plan, whatever the thread count).
//
// Measured with bench/cpu/bench_cpu_fwd on the development machine (Sapphire Rapids under KVM, 2 cores,
// 2 MiB L2 per core, AVX-512, Release, f32, B = 1, Hq = 12, both threads; OpenBLAS SGEMM n=2048 = ~300
// GFLOP/s in the same runs). Median GFLOP/s, as a fraction of that SGEMM:
//   D = 64, N = 1k:   Flash 96x256 0.70 (causal 0.62), FLAT R=96 0.74 (causal 0.66)
//           N = 4k:   Flash 96x256 0.81 (causal 0.73), FLAT R=60 0.81 (causal 0.72)
//           N = 16k:  Flash 96x256 0.80 (causal 0.78), FLAT R=12 0.63 causal (its K/V stream from L3)
//   D = 128, N = 2k:  Flash 0.77 (causal 0.68), FLAT 0.78 (causal 0.68);  D = 256 (Br 48), N = 2k: 0.73-0.79.
// Losing options at D = 64, N = 4k (fraction of SGEMM, non-causal / causal): Bc = 128 0.74 / 0.68;
// Bc = 512 0.80 / 0.72 (no better, and more diagonal waste at small N); Br = 192 0.79 / 0.69; FLAT R = 12
// 0.70 / 0.70, R = 24 0.76 / 0.73, R = 192 0.78 / 0.68. FLAT ties Flash while its R x Nk tile keeps
// R >= ~48 rows in half the L2 (Nk <= ~4k) and falls behind once R shrinks to 12 (16k): hence flat_max_nk.
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
  int dpbf16_block_n;         ///< Flash on the AVX512-BF16 path's bf16 slabs: keys per K/V block (multiple of kPanel)
};

// Bc on AVX512-BF16 (last column): measured on Zen 5 (bench/results/cpu-zen5-avx512bf16-2026-12-08.md), 1 and 2
// threads, bf16: 1024 keys per block against 256 took 2.6-5.5 % off the forward (gpt2 69.5 -> 66.3 ms, llama4k
// 318 -> 310, N = 16k 666 -> 639 on 1 thread); the slab's keys are trimmed to the visible ones, so causal loses
// nothing. D > 128 keeps Bc (not measured). The AMX path keeps Bc: on the Intel VM 96 x 256 was measured best.
// clang-format off
inline constexpr ForwardPolicy kForwardPolicy[] = {
  // max_d  Br   Bc   R cap  FLAT up to Nk  Bc AVX512-BF16
  {     64, 96, 256,     96,          4096,  1024},  // GPT-2, BERT: the measured rows above
  {    128, 96, 256,     96,          4096,  1024},  // Llama: measured at N = 2k (Flash and FLAT tie)
  {    256, 48, 256,     48,          2048,   256},  // Gemma: half the rows keep the 48 x 256 Q/O tiles in L1/L2
  { 1 << 30, 24, 128,    24,          1024,   128},  // larger head dims (rare, not measured): small tiles
};
// clang-format on

/// FLAT's logit tile (R x Nk fp32) plus its Q and O tiles may take this share of the core's L2; the rest
/// holds the K/V panels streaming through (FLAT paper Table 1, R-granularity: 4Rd + 4Nd + RN).
inline constexpr double kFlatL2Share = 0.5;
/// The bf16 paths (AMX, AVX512-BF16; src/cpu/forward_bf16.cc) run FLAT in row slabs of kAmxSlab = 32 rows, each
/// holding its 32 x Nk fp32 logits (and bf16 P) through the fused softmax: automatic picks FLAT there only while
/// that slab takes at most this share of L2, else Flash (its 32 x block_n slab stays in L1). Measured on the 2 MB
/// L2 development VM, 1 thread: Nk = 1k FLAT and Flash tie (69 vs 71-72 ms), Nk = 4k Flash 96 x 256 is 10-12 %
/// faster than FLAT (248-265 vs 278-292 ms, Llama GQA 32/8, D = 128, causal).
inline constexpr double kBf16SlabL2Share = 0.125;
/// True: without a mask (no causal edge, no window) automatic gives the bf16 slabs Flash at any Nk; with one, FLAT
/// (each slab over its own visible keys, one softmax step) while the slab fits kBf16SlabL2Share. Measured on the
/// 2 MB L2 development VM, bf16, 1 thread, CPU time, 2 rounds, FLAT R 96 -> Flash 96 x 256 (ms): unmasked
/// B 16 N 512 H 12 D 64 26.8 / 26.1 -> 25.2 / 25.1, GPT-2 (B 8 N 1k) 48.3 / 47.4 -> 45.0 / 45.6, B 2 N 2k H 12
/// 46.4 / 42.3 -> 43.7 / 40.8, B 4 N 1k H 16 D 128 45.5 / 45.0 -> 43.9 / 44.2; causal the other way (FLAT
/// 1-5 % ahead: GPT-2 causal 26.2 / 26.9 against 27.1 / 27.3).
inline constexpr bool kBf16FlashUnmasked = true;
/// The bf16 slabs' Flash tiles (src/cpu/forward_flash.cc): once one kv head's packed bf16 K and V (4 Nk dp bytes)
/// exceed this share of L2, every tile streams them from L3, and a tile of kBf16StreamRows rows instead of
/// flash_block_m reads each K/V byte once per that many rows (while each thread keeps kMinTilesPerThread tiles
/// for the cost split). Measured on the 2 MB L2 development VM, bf16, 1 thread, CPU time: N = 16k, H 8, D 64
/// (K/V 4 MB): 96 x 256 883 ms, 192 x 256 825, 384 x 256 790, 768 x 256 783 (causal 444 / 415 / 407 / 399);
/// Llama GQA 4k (K/V 2 MB, at the threshold, kept at 96): 96 .. 768 rows within noise (153-162 ms).
inline constexpr double kBf16KvL2Share = 1.0;
inline constexpr std::int64_t kBf16StreamRows = 384;
inline constexpr std::int64_t kMinTilesPerThread = 8;
/// L2 bytes assumed when the OS does not report the size (sysconf and /sys both fail).
inline constexpr std::size_t kDefaultL2Bytes = std::size_t{1} << 20;

/// Backward tiles (FA2 Alg. 2): query rows per tile, keys per block of the dQ pass, keys per block of the
/// dK/dV pass (a multiple of kKeyAlignBwd). Measured at D = 64, N = 2k (fraction of SGEMM, FLOPs counted
/// as 2.5x the forward's, non-causal / causal): 96/256/192 0.53 / 0.46 (chosen); 48/128/96 0.48 / 0.44;
/// 96/256/288 0.53 / 0.46; 192/256/192 0.53 / 0.45. D > 128 uses 48/128/96 to keep the tiles in L2.
struct BackwardPlan {
  int block_m = 96;
  int block_n = 256;
  int block_n_dkdv = 192;
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
