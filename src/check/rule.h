// The correctness rule of every check (tests, `flatattn check`, the sampled-row checker of run/bench),
// docs/design.md (the correctness rule):
//   max|out - ref| <= 2 * max|naive_lowp - ref| + floor (+ rel_tol * max|ref|)
// ref: the fp64 oracle (src/reference); naive_lowp: a low-precision yardstick, naive attention in the input
// dtype (the oracle's Precision::input, or the worse of several: yardstick.h); floor = 2 * max
// |round(round(ref + 0.3) - 0.3) - ref| in the output dtype (FlashAttention 3's rule), and for forward
// outputs at least 2 u max(|ref| + sum_j P_ij |V_jd|) (u: the dtype's unit roundoff; the rounding of O and
// of P to the storage dtype, which no fused kernel avoids: docs/design.md, judge_forward). fp32 outputs always
// add 1e-5 * max|ref| (rel_tol is raised to 1e-5): the oracle's fp32 naive_lowp rounds each step to fp32
// but accumulates in double, so it is a few ulps better than any kernel (or framework) that accumulates
// in fp32; docs/design.md holds fp32 kernels to "~1e-5 relative" instead.
// Non-finite outputs fail unless they equal an infinite reference; elements whose reference is not finite
// are not otherwise compared. rel_err = ||out - ref||_2 / ||ref||_2 over the compared elements.
#pragma once

#include <cstdint>
#include <string>

#include "src/check/host_tensor.h"

namespace flatattn::check {

/// Result of one comparison under the rule (errors in the output's units).
struct Verdict {
  double max_err = 0, naive_err = 0, floor = 0, bound = 0, rel_err = 0;
  std::int64_t compared = 0;    ///< elements compared with the oracle
  std::int64_t nonfinite = 0;   ///< NaN/Inf where the reference is finite (or mismatched infinities)
  std::int64_t unwritten = -1;  ///< non-finite elements in the whole poisoned output (-1: not scanned)
  std::int64_t rows = 0;        ///< sampled rows (0: whole tensors)
  bool pass = false;
  /// The CLI's line: "PASS max_err=1.2e-07 <= bound=3.1e-07 rel=2.0e-08 (64 sampled rows)".
  [[nodiscard]] std::string str() const;
  /// The bound's parts, for test failures: "max_err=.. bound=.. (2*naive=.. + floor=..) rel=.. nonfinite=.. PASS".
  [[nodiscard]] std::string detail() const;
};

/// Accumulates (out, ref, naive_lowp) element triples under the rule; naive may be NaN (no yardstick:
/// the bound is then floor + rel_tol * max|ref|). An infinite |naive - ref| makes the bound infinite
/// (callers that can meet one check std::isfinite(bound)).
class Judge {
 public:
  explicit Judge(DType out_dtype) : dtype_(out_dtype) {}
  /// allow >= 0 (forward outputs): the element's sum_j P_ij |V_jd|; the floor is then at least
  /// 2 u (|ref| + allow), u = unit_roundoff(dtype). allow < 0: no such term (gradients).
  void add(double out, double ref, double naive, double allow = -1.0);
  /// rel_tol adds rel_tol * max|ref| to the bound (at least 1e-5 for f32).
  [[nodiscard]] Verdict finish(double rel_tol = 0.0) const;

 private:
  friend Verdict judge(const HostTensor&, const HostTensor&, const HostTensor*, DType, double, const HostTensor*);
  struct Term;  // add() = apply(term()): judge() computes the terms on many threads, applies them in order
  [[nodiscard]] Term term(double out, double ref, double naive, double allow) const;
  void apply(const Term& t);
  DType dtype_;
  double max_err_ = 0, naive_err_ = 0, floor_ = 0, num_ = 0, den_ = 0, max_ref_ = 0;
  std::int64_t compared_ = 0, nonfinite_ = 0;
};

/// Compares `out` against the oracle `ref` (same logical shape, any dtypes) with naive_lowp (nullptr: no
/// yardstick) under the rule for output dtype `dtype`; `allow` (same shape; forward outputs): Judge::add's.
Verdict judge(const HostTensor& out, const HostTensor& ref, const HostTensor* naive_lowp, DType dtype,
              double rel_tol = 0.0, const HostTensor* allow = nullptr);

/// The unit roundoff u of a dtype (half an ulp of 1): f16 2^-11, bf16 2^-8, f32 2^-24, f64 2^-53.
double unit_roundoff(DType dtype);

/// Judges an LSE buffer (f32, natural log) against the oracle's: exact -inf where the row is empty,
/// otherwise |lse - ref| <= tol * max(1, |ref|) (tol 1e-5: LSE is fp32 whatever the input dtype).
Verdict judge_lse(const HostTensor& lse, const HostTensor& ref, double tol = 1e-5);

/// The LSE tolerance of judge_lse for a case, one rule for every check: 1e-5 on the CPU, 2e-4 on CUDA (its
/// exp2/log2 are the hardware approximations), per row relative to max(1, |ref|). With large logits (q, k with
/// input_sd > 4) the fp32 rounding of S itself (about eps D max|S|, absolute) dominates the rows whose LSE
/// happens to be small, so the bound becomes normwise there: times max(1, max|ref|) over the finite rows. Below that
/// threshold (and with softcap, whose LSE stays small while the pre-cap logits do not) a row can still carry the
/// logits' rounding in full: logit_rounding (oracle.h lse_logit_rounding, an absolute bound of that rounding) is a
/// floor of the tolerance.
double lse_tolerance(double input_sd, const HostTensor& ref, bool cuda, double logit_rounding = 0.0);

/// Replaces the yardstick `yard` by `other` when other is further from `ref` (max |x - ref|): the worse of
/// two naive computations is the yardstick.
void keep_worse_yardstick(HostTensor& yard, HostTensor&& other, const HostTensor& ref);

}  // namespace flatattn::check
