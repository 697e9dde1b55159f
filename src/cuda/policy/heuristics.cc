#include "src/cuda/policy/heuristics.h"

namespace flatattn::cuda {

bool flat_fits(Family f, int d, std::int64_t nk) {
  const FlatTileSize t = flat_tile(f, d);
  return t.cap_blocks > 0 && nk <= t.cap_n();
}

namespace {

/// Measured: the longest Nk at which the FLAT kernel beat the Flash kernel, per kernel head dim and
/// mask, on an H100 (bench/results/gpu-fwd-h100.md: FlashAttention-paper shapes B*N = 16k tokens,
/// Hq*D = 2048, N = 128 .. 16k, bf16). 0: FLAT never won. The two H100 runs before the table agreed:
/// FLAT won only at D = 256, N = 128, causal (1.01x and 1.04x); everywhere else Flash was faster
/// (FLAT 0.67-0.98x at N <= 256; FLAT cannot hold N >= 512 at D = 256 or N > 256 at all).
struct FlatWins {
  int d;
  std::int64_t max_nk_dense, max_nk_causal;
};
constexpr FlatWins kFlatWinsSm80[] = {
    {32, 0, 0}, {64, 0, 0}, {96, 0, 0}, {128, 0, 0}, {192, 0, 0}, {256, 0, 128},
};

}  // namespace

Dataflow choose_dataflow(Family f, const Workload& w) {
  if (!flat_fits(f, w.d, w.nk)) return Dataflow::flash;
  if (f != Family::sm80) return Dataflow::flash;  // not measured on Turing: keep the general kernel
  for (const FlatWins& e : kFlatWinsSm80) {
    if (e.d == w.d) return w.nk <= (w.masked ? e.max_nk_causal : e.max_nk_dense) ? Dataflow::flat : Dataflow::flash;
  }
  return Dataflow::flash;
}

}  // namespace flatattn::cuda
