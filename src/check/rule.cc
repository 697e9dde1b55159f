#include "src/check/rule.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "src/core/half.h"
#include "src/reference/parallel.h"

namespace flatattn::check {

double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::f16: return std::ldexp(1.0, -11);
    case DType::bf16: return std::ldexp(1.0, -8);
    case DType::f32: return std::ldexp(1.0, -24);
    default: return std::ldexp(1.0, -53);
  }
}

/// One element's part in a Judge: what add() folds into the running maxima and sums (a function of the
/// element alone, so the terms of many elements can be computed on many threads).
struct Judge::Term {
  enum : std::uint8_t { finite, nonfinite_ok, nonfinite_bad } kind;
  double e, r, naive_err, floor;
};

Judge::Term Judge::term(double o, double r, double naive, double allow) const {
  if (!std::isfinite(o) || !std::isfinite(r))
    return {std::isinf(o) && o == r ? Term::nonfinite_ok : Term::nonfinite_bad, 0, 0, 0, 0};
  double floor = 2.0 * std::abs(round_to(dtype_, round_to(dtype_, r + 0.3) - 0.3) - r);
  if (allow >= 0) floor = std::max(floor, 2.0 * unit_roundoff(dtype_) * (std::abs(r) + allow));
  // a NaN yardstick is skipped (std::max keeps the running value), an infinite one counts
  return {Term::finite, std::abs(o - r), r, std::abs(naive - r), floor};
}

void Judge::apply(const Term& t) {
  ++compared_;
  if (t.kind != Term::finite) {
    if (t.kind == Term::nonfinite_bad) ++nonfinite_;
    return;
  }
  max_err_ = std::max(max_err_, t.e);
  num_ += t.e * t.e;
  den_ += t.r * t.r;
  max_ref_ = std::max(max_ref_, std::abs(t.r));
  naive_err_ = std::max(naive_err_, t.naive_err);
  floor_ = std::max(floor_, t.floor);
}

void Judge::add(double o, double r, double naive, double allow) { apply(term(o, r, naive, allow)); }

Verdict Judge::finish(double rel_tol) const {
  if (dtype_ == DType::f32) rel_tol = std::max(rel_tol, 1e-5);
  Verdict v;
  v.max_err = max_err_;
  v.naive_err = naive_err_;
  v.floor = floor_;
  v.rel_err = den_ > 0 ? std::sqrt(num_ / den_) : std::sqrt(num_);
  v.bound = 2.0 * naive_err_ + floor_ + rel_tol * max_ref_;
  v.compared = compared_;
  v.nonfinite = nonfinite_;
  v.pass = nonfinite_ == 0 && max_err_ <= v.bound;
  return v;
}

Verdict judge(const HostTensor& out, const HostTensor& ref, const HostTensor* naive, DType dtype, double rel_tol,
              const HostTensor* allow) {
  Judge j(dtype);
  constexpr double none = std::numeric_limits<double>::quiet_NaN();
  // The elements are read and turned into terms on all threads a block at a time (HostTensor::at and the
  // floor's roundings are most of the cost), then folded in index order on this one: the verdict is bitwise
  // that of add() in a loop.
  constexpr std::int64_t block = std::int64_t{1} << 18;
  const std::int64_t n = ref.numel();
  std::vector<Judge::Term> terms;
  for (std::int64_t b0 = 0; b0 < n; b0 += block) {
    terms.resize(static_cast<std::size_t>(std::min(block, n - b0)));
    flatattn::ref::parallel_ranges(static_cast<std::int64_t>(terms.size()), 1 << 13, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t i = lo; i < hi; ++i)
        terms[i] = j.term(out.at(b0 + i), ref.at(b0 + i), naive ? naive->at(b0 + i) : none, allow ? allow->at(b0 + i) : -1.0);
    });
    for (const Judge::Term& t : terms) j.apply(t);
  }
  return j.finish(rel_tol);
}

Verdict judge_lse(const HostTensor& lse, const HostTensor& ref, double tol) {
  Verdict v;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.at(i), o = lse.at(i);
    ++v.compared;
    if (std::isinf(r) || std::isinf(o) || std::isnan(o)) {
      if (!(std::isinf(r) && r == o)) ++v.nonfinite;
      continue;
    }
    v.max_err = std::max(v.max_err, std::abs(o - r) / std::max(1.0, std::abs(r)));
  }
  v.bound = tol;
  v.pass = v.nonfinite == 0 && v.max_err <= tol;
  return v;
}

double lse_tolerance(double input_sd, const HostTensor& ref, bool cuda, double logit_rounding) {
  double tol = cuda ? 2e-4 : 1e-5;
  if (input_sd > 4.0) {
    double mx = 1.0;
    for (std::int64_t i = 0; i < ref.numel(); ++i)
      if (std::isfinite(ref.at(i))) mx = std::max(mx, std::abs(ref.at(i)));
    tol *= mx;
  }
  return std::max(tol, logit_rounding);
}

void keep_worse_yardstick(HostTensor& yard, HostTensor&& other, const HostTensor& ref) {
  if (judge(other, ref, nullptr, DType::f32).max_err > judge(yard, ref, nullptr, DType::f32).max_err)
    yard = std::move(other);
}

std::string Verdict::str() const {
  std::string s = fmt::format("{} max_err={:.2e} {} bound={:.2e} rel={:.2e}", pass ? "PASS" : "FAIL", max_err,
                              max_err <= bound ? "<=" : ">", bound, rel_err);
  if (nonfinite) s += fmt::format(" nonfinite={}", nonfinite);
  if (rows) s += fmt::format(" ({} sampled rows)", rows);
  if (unwritten > 0) s += fmt::format(" unwritten/non-finite outputs={}", unwritten);
  return s;
}

std::string Verdict::detail() const {
  std::ostringstream s;
  s << "max_err=" << max_err << " bound=" << bound << " (2*naive=" << 2 * naive_err << " + floor=" << floor
    << ") rel=" << rel_err << " nonfinite=" << nonfinite << (pass ? " PASS" : " FAIL");
  return s.str();
}

}  // namespace flatattn::check
