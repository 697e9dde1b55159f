#include "cli/sample_check.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "src/core/half.h"
#include "src/core/validate.h"
#include "src/reference/reference.h"

namespace flatattn::cli {

// ---- the rule ------------------------------------------------------------------------------------

double rel_tol_for(DType dtype) { return dtype == DType::f32 ? 1e-5 : 0.0; }

void Judge::add(double o, double r, double naive) {
  ++compared_;
  if (!std::isfinite(o) || !std::isfinite(r)) {
    if (!(std::isinf(o) && o == r)) ++nonfinite_;
    return;
  }
  const double e = std::abs(o - r);
  max_err_ = std::max(max_err_, e);
  num_ += e * e;
  den_ += r * r;
  max_ref_ = std::max(max_ref_, std::abs(r));
  if (std::isfinite(naive)) naive_err_ = std::max(naive_err_, std::abs(naive - r));
  floor_ = std::max(floor_, 2.0 * std::abs(round_to(dtype_, round_to(dtype_, r + 0.3) - 0.3) - r));
}

Verdict Judge::finish(double rel_tol) const {
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

std::string Verdict::str() const {
  std::string s = fmt::format("{} max_err={:.2e} {} bound={:.2e} rel={:.2e}", pass ? "PASS" : "FAIL", max_err,
                              max_err <= bound ? "<=" : ">", bound, rel_err);
  if (nonfinite) s += fmt::format(" nonfinite={}", nonfinite);
  if (rows) s += fmt::format(" ({} sampled rows)", rows);
  if (unwritten > 0) s += fmt::format(" unwritten/non-finite outputs={}", unwritten);
  return s;
}

nlohmann::json Verdict::to_json() const {
  return {{"pass", pass},         {"max_err", max_err},     {"bound", bound},         {"naive_err", naive_err},
          {"floor", floor},       {"rel_err", rel_err},     {"compared", compared},   {"nonfinite", nonfinite},
          {"unwritten", unwritten}, {"sampled_rows", rows}};
}

// ---- one-row problems ----------------------------------------------------------------------------

namespace {

Problem problem_of(const TensorView& q, const TensorView& k, const TensorView& v, const std::optional<Varlen>& vl,
                   const Options& o) {
  // Validate with an f64 dummy output so only q, k, v and the options matter.
  ForwardArgs a;
  a.q = q;
  a.k = k;
  a.v = v;
  a.varlen = vl;
  a.out = q;
  a.out.dtype = DType::f64;
  Options opt = o;
  opt.return_lse = false;
  return validate_forward(a, opt, Consumer::oracle).problem;
}

TensorView row_view(const TensorView& base, const Problem& p, const RowStrides& s, std::int64_t b, std::int64_t row0,
                    std::int64_t n0, std::int64_t rows, std::int64_t head) {
  TensorView t;
  t.data = static_cast<char*>(base.data) + element_size(base.dtype) * row_offset(p, s, b, row0, n0, head);
  t.dtype = base.dtype;
  t.device = base.device;
  t.rank = 4;
  t.shape = {1, rows, 1, p.d};
  t.stride = {0, s.n, s.h, 1};
  return t;
}

RowStrides strides(const TensorView& t, bool varlen) {
  return varlen ? RowStrides{0, t.stride[0], t.stride[1]} : RowStrides{t.stride[0], t.stride[1], t.stride[2]};
}

/// The one-row problem of row r: q row, keys 0..hi(i), options reproducing lo(i)..hi(i).
struct OneRow {
  TensorView q, k, v;
  Options opt;
};

OneRow one_row(const Problem& p, const TensorView& q, const TensorView& k, const TensorView& v, const RowId& r) {
  const SeqSpan sp = seq_span(p, r.b);
  const std::int64_t lo = p.mask.lo(r.i, sp.nq, sp.nk), hi = p.mask.hi(r.i, sp.nq, sp.nk);
  const std::int64_t nk1 = hi >= lo ? hi + 1 : 0;
  const std::int64_t hk = r.h / p.group();
  OneRow o;
  o.q = row_view(q, p, strides(q, p.varlen), r.b, sp.q0, r.i, 1, r.h);
  o.k = row_view(k, p, strides(k, p.varlen), r.b, sp.k0, 0, nk1, hk);
  o.v = row_view(v, p, strides(v, p.varlen), r.b, sp.k0, 0, nk1, hk);
  o.opt.softmax_scale = p.scale;
  o.opt.softcap = p.variant.softcap;
  o.opt.causal = false;
  o.opt.causal_align = CausalAlign::bottom_right;  // diag(0) = nk1 - 1 = hi
  if (nk1 > 0) o.opt.window = Window{lo > 0 ? hi - lo : -1, 0};
  return o;
}

std::vector<double> ref_row(const OneRow& o, ref::Precision prec) {
  std::vector<double> out(static_cast<std::size_t>(o.q.shape[3]));
  ForwardArgs a;
  a.q = o.q;
  a.k = o.k;
  a.v = o.v;
  a.out = TensorView::contiguous(out.data(), DType::f64, {1, 1, 1, o.q.shape[3]});
  ref::forward(a, o.opt, prec);
  return out;
}

std::vector<double> ref_dq_row(const OneRow& o, const TensorView& dout_row, ref::Precision prec) {
  const std::int64_t d = o.q.shape[3], nk1 = o.k.shape[1];
  std::vector<double> dq(d), out(d), lse(1), dk(std::max<std::int64_t>(nk1, 1) * d), dv(dk.size());
  BackwardArgs a;
  a.dout = dout_row;
  a.q = o.q;
  a.k = o.k;
  a.v = o.v;
  a.out = TensorView::contiguous(out.data(), DType::f64, {1, 1, 1, d});  // validated, unused by the oracle
  a.lse = TensorView::contiguous(lse.data(), DType::f64, {1, 1, 1});
  a.dq = TensorView::contiguous(dq.data(), DType::f64, {1, 1, 1, d});
  a.dk = TensorView::contiguous(dk.data(), DType::f64, {1, nk1, 1, d});
  a.dv = TensorView::contiguous(dv.data(), DType::f64, {1, nk1, 1, d});
  ref::backward(a, o.opt, prec);
  return dq;
}

double load_row(const TensorView& t, const Problem& p, const RowId& r, std::int64_t row0, std::int64_t d) {
  return load_double(t.data, t.dtype, row_offset(p, strides(t, p.varlen), r.b, row0, r.i, r.h) + d);
}

}  // namespace

std::vector<RowId> sample_rows(const ForwardArgs& args, const Options& options, int count, std::uint64_t seed) {
  const Problem p = problem_of(args.q, args.k, args.v, args.varlen, options);
  std::vector<std::pair<std::int64_t, std::int64_t>> seqs;  // (b, nq) with nq > 0
  std::int64_t total = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t n = seq_span(p, b).nq;
    if (n > 0) seqs.emplace_back(b, n);
    total += n * p.hq;
  }
  std::vector<RowId> rows;
  if (seqs.empty() || count <= 0) return rows;
  std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t>> seen;
  auto add = [&](std::int64_t b, std::int64_t h, std::int64_t i) {
    if (seen.insert({b, h, i}).second) rows.push_back({b, h, i});
  };
  add(seqs.front().first, 0, 0);
  add(seqs.back().first, p.hq - 1, seqs.back().second - 1);
  const auto& mid = seqs[seqs.size() / 2];
  add(mid.first, p.hq / 2, mid.second / 2);
  std::mt19937_64 rng(seed);
  const std::int64_t want = std::min<std::int64_t>(count, total);
  while (static_cast<std::int64_t>(rows.size()) < want) {
    const auto& s = seqs[std::uniform_int_distribution<std::size_t>(0, seqs.size() - 1)(rng)];
    add(s.first, std::uniform_int_distribution<std::int64_t>(0, p.hq - 1)(rng),
        std::uniform_int_distribution<std::int64_t>(0, s.second - 1)(rng));
  }
  return rows;
}

Verdict check_forward_rows(const ForwardArgs& args, const Options& options, const std::vector<RowId>& rows) {
  const Problem p = problem_of(args.q, args.k, args.v, args.varlen, options);
  Judge j(args.out.dtype);
  for (const RowId& r : rows) {
    const OneRow o = one_row(p, args.q, args.k, args.v, r);
    const std::vector<double> ref = ref_row(o, ref::Precision::f64);
    const std::vector<double> naive = ref_row(o, ref::Precision::input);
    const std::int64_t q0 = seq_span(p, r.b).q0;
    for (std::int64_t d = 0; d < p.d; ++d) j.add(load_row(args.out, p, r, q0, d), ref[d], naive[d]);
  }
  Verdict v = j.finish(rel_tol_for(args.out.dtype));
  v.rows = static_cast<std::int64_t>(rows.size());
  return v;
}

Verdict check_dq_rows(const BackwardArgs& args, const Options& options, const std::vector<RowId>& rows) {
  const Problem p = problem_of(args.q, args.k, args.v, args.varlen, options);
  Judge j(args.dq.dtype);
  for (const RowId& r : rows) {
    const OneRow o = one_row(p, args.q, args.k, args.v, r);
    const SeqSpan sp = seq_span(p, r.b);
    const TensorView dout = row_view(args.dout, p, strides(args.dout, p.varlen), r.b, sp.q0, r.i, 1, r.h);
    const std::vector<double> ref = ref_dq_row(o, dout, ref::Precision::f64);
    const std::vector<double> naive = ref_dq_row(o, dout, ref::Precision::input);
    for (std::int64_t d = 0; d < p.d; ++d) j.add(load_row(args.dq, p, r, sp.q0, d), ref[d], naive[d]);
  }
  Verdict v = j.finish(rel_tol_for(args.dq.dtype));
  v.rows = static_cast<std::int64_t>(rows.size());
  return v;
}

Verdict judge_tensors(const Tensor& out, const Tensor& ref, const Tensor& naive, const Tensor* naive2) {
  Judge j(out.dtype());
  const std::int64_t n = ref.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    const double r = ref.at(i);
    double yard = naive.at(i);
    if (naive2 && std::abs(naive2->at(i) - r) > std::abs(yard - r)) yard = naive2->at(i);
    j.add(out.at(i), r, yard);
  }
  return j.finish(rel_tol_for(out.dtype()));
}

Verdict judge_lse(const Tensor& lse, const Tensor& ref, double tol) {
  Verdict v;
  const std::int64_t n = ref.numel();
  for (std::int64_t i = 0; i < n; ++i) {
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

}  // namespace flatattn::cli
