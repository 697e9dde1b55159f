// Predicted vs measured kernel times: how good the planner is on real hardware.
//
// Measured file (JSON): either a list of records or {"device": ..., "results": [records]}. A record:
//   {"kernel": "flash_128x64_w4", "dataflow": "flash" | "flat", "block_m": 128, "block_n": 64,
//    "B": 4, "N": 4096, "Hq": 32, "D": 128, "causal": false, "ms": 1.234,
//    optional: "Nk" (default N), "Hkv" (default Hq), "warps" (4), "stages" (2), "path" ("" = the GPU's
//    default), "dtype" ("bf16"), "cap_n" (FLAT with register-held rows: their capacity; 0 = smem),
//    "producer_warps" (0), "cta_regs" (0: estimated) (gpu_kernel.h KernelVariant)}
// Records with the same (B, N, Nk, Hq, Hkv, D, causal, dtype) form one shape of the grid; the planner's
// pick for a shape is the measured kernel it predicts fastest.
#pragma once

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

/// Spearman rank correlation (average ranks for ties). Throws Error when sizes differ or < 2.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

/// Refits the calibration of the kernel paths seen in `measured` (mma_efficiency, overlap,
/// flat_overlap, cta_overhead_cycles per path, and launch_us) by coordinate search minimizing the median
/// |log(predicted / measured)|. Returns the GPU with the new constants; `report` receives a JSON
/// override file ({"base": ..., "paths": {...}, "launch_us": ...}) to save as a hardware file.
Gpu calibrate(const Gpu& gpu, const std::vector<Measured>& measured, const std::string& base_name, std::string& report);

}  // namespace flatattn::model
