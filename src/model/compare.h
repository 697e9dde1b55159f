// Predicted vs measured kernel times: how good the planner is on real hardware.
//
// Measured file (JSON): either a list of records or {"device": ..., "results": [records]}. A record:
//   {"kernel": "flash_128x64_w4", "dataflow": "flash" | "flat", "block_m": 128, "block_n": 64,
//    "B": 4, "N": 4096, "Hq": 32, "D": 128, "causal": false, "ms": 1.234,
//    optional: "Nk" (default N), "Hkv" (default Hq), "warps" (4), "stages" (2), "path" ("" = the GPU's
//    default), "dtype" ("bf16"), "cap_n" (FLAT with register-held rows: their capacity; 0 = smem),
//    "producer_warps" (0), "cta_regs" (0: estimated), "persistent" (false) (gpu_kernel.h KernelVariant)}
// Records with the same (B, N, Nk, Hq, Hkv, D, causal, dtype) form one shape of the grid; the planner's
// pick for a shape is the measured kernel it predicts fastest.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "src/model/gpu_kernel.h"

namespace flatattn::model {

struct Measured {
  KernelVariant variant{};
  AttnShape shape{};
  double ms = 0;
};

/// Reads a measured file; throws Error naming the file, the record index and the key on bad input.
std::vector<Measured> load_measured(const std::filesystem::path& file);

struct ComparedRow {
  Measured measured{};
  double predicted_ms = 0;   ///< NaN when the model calls the variant infeasible
  double rel_error = 0;      ///< |predicted - measured| / measured
};

struct Comparison {
  std::vector<ComparedRow> rows;
  int infeasible = 0;            ///< measured records the model says cannot run (excluded from stats)
  double spearman = 0;           ///< rank correlation of predicted vs measured times over all rows
  double median_rel_error = 0;
  int shapes = 0;                ///< shapes with >= 1 comparable record
  int picks_fastest = 0;         ///< shapes where the predicted-fastest is the measured-fastest
  int picks_within_5pct = 0;     ///< ... or within 5 % of it
  [[nodiscard]] double pick_accuracy() const { return shapes ? double(picks_fastest) / shapes : 0; }
};

/// Predicts every record on `gpu` and computes the statistics.
Comparison compare(const Gpu& gpu, const std::vector<Measured>& measured);

/// The median of v (the mean of the middle two for an even count); NaN when v is empty.
double median(std::vector<double> v);

/// Spearman rank correlation (average ranks for ties). Throws Error when sizes differ or < 2.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

/// Refits the calibration of the kernel paths seen in `measured` (mma_efficiency, overlap,
/// flat_overlap, cta_overhead_cycles per path, and launch_us) by coordinate search minimizing the median
/// |log(predicted / measured)|. Returns the GPU with the new constants; `report` receives a JSON
/// override file ({"base": ..., "paths": {...}, "launch_us": ...}) to save as a hardware file.
Gpu calibrate(const Gpu& gpu, const std::vector<Measured>& measured, const std::string& base_name, std::string& report);

/// One shape of a persistent-kernel A/B: a one-tile record and the persistent one of the same kernel (names equal but
/// for the persistent one's "_p" suffix, as the Report names them) on the same shape, measured and predicted.
struct PersistentRow {
  Measured one_tile{}, persistent{};
  double pred_one_tile_ms = 0, pred_persistent_ms = 0;
  /// one-tile time / persistent time: > 1 where the persistent kernel is faster (the A/B tables' persistent / one-tile
  /// TFLOP/s).
  [[nodiscard]] double measured_speedup() const { return one_tile.ms / persistent.ms; }
  [[nodiscard]] double predicted_speedup() const { return pred_one_tile_ms / pred_persistent_ms; }
  [[nodiscard]] bool model_picks_persistent() const { return pred_persistent_ms < pred_one_tile_ms; }
  /// What a pick costs: its measured time over the faster kernel's, minus 1 (0 when it is the faster one).
  [[nodiscard]] static double loss(bool persistent, double one_ms, double persistent_ms) {
    return (persistent ? persistent_ms : one_ms) / std::min(one_ms, persistent_ms) - 1;
  }
};

struct PersistentCheck {
  std::vector<PersistentRow> rows;
  int picks_faster = 0;           ///< shapes where the model picks the measured faster kernel
  int picks_losing = 0;           ///< shapes where its pick is more than `tolerance` slower than the other
  double median_speedup_error = 0;  ///< median |log(predicted speedup / measured speedup)|
};

/// Pairs the one-tile and persistent records of `measured` (see PersistentRow) and predicts both on `gpu`; `tolerance`:
/// the share a pick may lose and still not count in picks_losing (0.02: 2 %). Throws Error when no pair is found or
/// the model calls a record infeasible.
PersistentCheck check_persistent(const Gpu& gpu, const std::vector<Measured>& measured, double tolerance = 0.02);

/// Fits GpuPath::persistent_tile_cycles of `path` to the pairs of `measured` (the one new constant of the persistent
/// description): the value in [0, cta_overhead_cycles] (steps of 1 % of it) with the smallest median
/// |log(predicted / measured speedup)|, ties to the smaller error sum. Returns the GPU with it set.
Gpu fit_persistent(const Gpu& gpu, const std::vector<Measured>& measured, const std::string& path);

}  // namespace flatattn::model
