// Checking a kernel's output against the fp64 oracle (src/reference) under the correctness rule of docs/design.md
//   max|out - ref| <= 2 * max|naive_lowp - ref| + floor
// ref: the oracle in fp64; naive_lowp: the oracle's Precision::input (naive attention computed in the
// input dtype); floor = 2 * max |round(round(ref + 0.3) - 0.3) - ref| in the output dtype (FA3's rule).
// Non-finite outputs fail unless they equal an infinite reference. rel = ||out - ref|| / ||ref||.
// fp32 outputs add 1e-5 * max|ref| to the bound (rel_tol): the oracle's fp32 naive_lowp rounds each step
// to fp32 but accumulates in double, so it is a few ulps better than any kernel (or framework) that
// accumulates in fp32; docs/design.md holds fp32 CPU kernels to "~1e-5 relative" instead, as the CPU engine's
// own tests do (tests/cpu/cpu_check.h).
//
// Large problems are checked on sampled rows: output row i of head h of sequence b depends only on
// q[b, i, h], the keys lo(i)..hi(i) that row sees and their values, so the oracle runs on a one-row
// problem made of views into the same buffers (keys 0..hi(i), bottom-right window (hi-lo, 0)), which is
// exact for causal, windows of either alignment, softcap, GQA and varlen. dQ rows likewise depend only
// on their own row (dS_i = P_i * (dP_i - rowsum(dO_i * O_i))); dK/dV need every row and are checked
// on whole small problems by `flatattn check`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/buffers.h"
#include "flatattn/attention.h"

namespace flatattn::cli {

struct Verdict {
  double max_err = 0, naive_err = 0, floor = 0, bound = 0, rel_err = 0;
  std::int64_t compared = 0;    ///< elements compared with the oracle
  std::int64_t nonfinite = 0;   ///< non-finite where the reference is finite (among those compared)
  std::int64_t unwritten = -1;  ///< non-finite elements in the whole poisoned output (-1: not scanned)
  std::int64_t rows = 0;        ///< sampled rows (0: whole tensors)
  bool pass = false;
  [[nodiscard]] std::string str() const;  ///< "PASS max_err=1.2e-07 <= bound=3.1e-07 rel=2.0e-08 (64 rows)"
  [[nodiscard]] nlohmann::json to_json() const;
};

/// The rel_tol of the rule for an output dtype: 1e-5 for f32, 0 for f16/bf16 (the rule unchanged).
double rel_tol_for(DType dtype);

/// Accumulates (out, ref, naive_lowp) element triples under the rule.
class Judge {
 public:
  explicit Judge(DType out_dtype) : dtype_(out_dtype) {}
  void add(double out, double ref, double naive);
  /// rel_tol adds rel_tol * max|ref| to the bound; the CLI applies the plain rule (0).
  [[nodiscard]] Verdict finish(double rel_tol = 0.0) const;

 private:
  DType dtype_;
  double max_err_ = 0, naive_err_ = 0, floor_ = 0, num_ = 0, den_ = 0, max_ref_ = 0;
  std::int64_t compared_ = 0, nonfinite_ = 0;
};

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

/// Judges a whole tensor against the oracle's f64 result and its Precision::input result. naive2, when
/// given, is a second yardstick (e.g. the engine's fp32 naive attention) and the worse of the two counts.
Verdict judge_tensors(const Tensor& out, const Tensor& ref, const Tensor& naive, const Tensor* naive2 = nullptr);

/// LSE rule: exact -inf for empty rows, else |lse - ref| <= tol * max(1, |ref|) (tol 1e-5: LSE is fp32
/// whatever the input dtype).
Verdict judge_lse(const Tensor& lse, const Tensor& ref, double tol = 1e-5);

}  // namespace flatattn::cli
