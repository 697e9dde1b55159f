// The decode model (decode.h) against bench_decode measurements: per-row errors, per-shape split picks (the model's
// and the runtime rule's, src/cuda/policy/decode_plan.h), and the fit of the GPU's decode constants.
//
// Measured file: bench/gpu/bench_decode's JSON, {"device", "commit", "dtype": "bf16", "d": 128, "rows": [...]}, a
// row {"batch", "ctx", "hq", "hkv", "qlen", "page" (0: contiguous), "splits", "planner_splits", "mode", "ms", ...}.
// Rows of mode "forced", "planner" and "planner_last" are split-KV steps at `splits` and are read; "cluster" rows
// (another kernel) and the append rows (no "ms") are skipped.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "src/model/decode.h"

namespace flatattn::model {

struct DecodeMeasured {
  DecodeShape shape{};
  int splits = 1;          ///< the split count the step ran
  int rule_splits = 1;     ///< the runtime planner's count for the shape on that GPU ("planner_splits")
  std::string mode;        ///< forced | planner | planner_last
  double ms = 0;
};

/// Reads a bench_decode JSON; throws Error naming the file, the row and the key on bad input, or when no split-KV
/// row is in it.
std::vector<DecodeMeasured> load_decode_measured(const std::filesystem::path& file);

struct DecodeRow {
  DecodeMeasured measured{};
  double predicted_ms = 0;
  double rel_error = 0;    ///< |predicted - measured| / measured
};

/// One shape measured at >= 2 split counts: which count each chooser takes and what it costs.
struct DecodePick {
  DecodeShape shape{};
  std::vector<int> splits;           ///< the measured counts, ascending
  std::vector<double> ms;            ///< their times (the median of a count's rows)
  int best = 0;                      ///< the measured fastest count
  int model = 0;                     ///< the model's argmin over the measured counts
  int rule = 0;                      ///< the runtime rule's count (may be unmeasured)
  int model_free = 0;                ///< the model's argmin over 1..128 (model_decode_splits)
  double model_loss = 0;             ///< ms(model) / ms(best) - 1
  double rule_loss = 0;              ///< ms(rule) / ms(best) - 1; NaN when the rule's count was not measured
};

struct DecodeComparison {
  std::vector<DecodeRow> rows;
  std::vector<DecodePick> picks;
  double median_rel_error = 0, max_rel_error = 0;
  double spearman = 0;               ///< rank correlation of predicted vs measured over the rows
  int model_ok = 0;                  ///< picks whose model count is within `tolerance` of the fastest
  int rule_ok = 0, rule_measured = 0;  ///< the same for the rule, over the picks whose rule count was measured
};

/// Predicts every row on `gpu`; a pick counts as ok when its count is at most `tolerance` (0.02: 2 %) slower than the
/// measured fastest.
DecodeComparison compare_decode(const Gpu& gpu, const std::vector<DecodeMeasured>& rows, double tolerance = 0.02);

/// Fits gpu.decode to `rows`: the constants minimizing the mean |log(predicted / measured)| (Nelder-Mead in the
/// logarithms of the constants, from gpu.decode when the file has one, else from a physical guess). Returns the
/// constants. Throws Error when rows is empty.
DecodeCalib fit_decode(const Gpu& gpu, const std::vector<DecodeMeasured>& rows);

}  // namespace flatattn::model
