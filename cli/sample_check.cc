#include "cli/sample_check.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "src/core/half.h"
#include "src/core/validate.h"
#include "src/reference/parallel.h"
#include "src/reference/reference.h"

namespace flatattn::cli {

nlohmann::json to_json(const Verdict& v) {
  return {{"pass", v.pass},         {"max_err", v.max_err},   {"bound", v.bound},       {"naive_err", v.naive_err},
          {"floor", v.floor},       {"rel_err", v.rel_err},   {"compared", v.compared}, {"nonfinite", v.nonfinite},
          {"unwritten", v.unwritten}, {"sampled_rows", v.rows}};
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
  TensorView sink;  ///< the row's head's sink, a (1) view (absent without sinks)
  Options opt;
};

OneRow one_row(const Problem& p, const TensorView& q, const TensorView& k, const TensorView& v, const RowId& r,
               const TensorView& sinks) {
  const SeqSpan sp = seq_span(p, r.b);
  const std::int64_t lo = p.mask.lo(r.i, sp.nq, sp.nk), hi = p.mask.hi(r.i, sp.nq, sp.nk);
  const std::int64_t nk1 = hi >= lo ? hi + 1 : 0;
  const std::int64_t hk = r.h / p.group();
  OneRow o;
  o.q = row_view(q, p, strides(q, p.varlen), r.b, sp.q0, r.i, 1, r.h);
  o.k = row_view(k, p, strides(k, p.varlen), r.b, sp.k0, 0, nk1, hk);
  o.v = row_view(v, p, strides(v, p.varlen), r.b, sp.k0, 0, nk1, hk);
  if (sinks.present()) {
    o.sink = sinks;
    o.sink.data = static_cast<char*>(sinks.data) + element_size(sinks.dtype) * r.h * sinks.stride[0];
    o.sink.shape[0] = 1;
  }
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
  a.sinks = o.sink;
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
  a.sinks = o.sink;
  ref::backward(a, o.opt, prec);
  return dq;
}

/// The forward rule's allowance of the row (Judge::add): sum_j P_ij |V_jd|, the oracle run on f64 copies of
/// the row's q, k and |v| (exact: the oracle reads every dtype as double).
std::vector<double> allow_row(const OneRow& o) {
  const std::int64_t d = o.q.shape[3], nk1 = o.k.shape[1];
  auto copy = [&](const TensorView& t, std::int64_t rows, bool abs) {
    std::vector<double> x(static_cast<std::size_t>(std::max<std::int64_t>(rows, 1) * d), 0.0);
    for (std::int64_t n = 0; n < rows; ++n)
      for (std::int64_t c = 0; c < d; ++c) {
        const double e = load_double(t.data, t.dtype, n * t.stride[1] + c);
        x[static_cast<std::size_t>(n * d + c)] = abs ? std::abs(e) : e;
      }
    return x;
  };
  std::vector<double> q = copy(o.q, 1, false), k = copy(o.k, nk1, false), v = copy(o.v, nk1, true), out(d);
  ForwardArgs a;
  a.q = TensorView::contiguous(q.data(), DType::f64, {1, 1, 1, d});
  a.k = TensorView::contiguous(k.data(), DType::f64, {1, nk1, 1, d});
  a.v = TensorView::contiguous(v.data(), DType::f64, {1, nk1, 1, d});
  a.out = TensorView::contiguous(out.data(), DType::f64, {1, 1, 1, d});
  a.sinks = o.sink;
  ref::forward(a, o.opt, ref::Precision::f64);
  return out;
}

/// The f32 opt-in (Options::fp32_matmul = bf16) is judged as the tests judge it (tests/cpu/test_fp32_matmul.cc): the
/// oracle and the input-precision yardstick run on the inputs rounded to bf16 (nearest even, as the engine's
/// packers round them), under the rule for bf16. True when a call is such a call.
bool rounded_inputs(const Options& o, const TensorView& q) {
  return o.fp32_matmul == Fp32Matmul::bf16 && q.dtype == DType::f32;
}

/// t (a row view: shape {1, rows, 1, d}) copied to bf16 in `keep`, returned as a contiguous view of it.
TensorView to_bf16(const TensorView& t, std::vector<std::uint16_t>& keep) {
  const std::int64_t rows = t.shape[1], d = t.shape[3];
  keep.assign(static_cast<std::size_t>(std::max<std::int64_t>(rows, 1) * d), 0);
  for (std::int64_t n = 0; n < rows; ++n)
    for (std::int64_t c = 0; c < d; ++c)
      keep[static_cast<std::size_t>(n * d + c)] = float_to_bf16(static_cast<float>(load_double(t.data, t.dtype, n * t.stride[1] + c)));
  return TensorView::contiguous(keep.data(), DType::bf16, {1, rows, 1, d});
}

/// The rounded copies of a row's inputs (alive while its views are used).
struct RoundedRow {
  std::vector<std::uint16_t> q, k, v, dout;
};

void round_row(OneRow& o, RoundedRow& keep) {
  o.q = to_bf16(o.q, keep.q);
  o.k = to_bf16(o.k, keep.k);
  o.v = to_bf16(o.v, keep.v);
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
  const bool rounded = rounded_inputs(options, args.q);
  Judge j(rounded ? DType::bf16 : args.out.dtype);
  // The rows' oracles on all threads (each row is its own one-row problem), added in row order here.
  std::vector<std::vector<double>> oracle(rows.size()), naive(rows.size()), allow(rows.size());
  ref::parallel_tasks(static_cast<std::int64_t>(rows.size()), [&](std::int64_t x) {
    OneRow o = one_row(p, args.q, args.k, args.v, rows[x], args.sinks);
    RoundedRow keep;
    if (rounded) round_row(o, keep);
    oracle[x] = ref_row(o, ref::Precision::f64);
    naive[x] = ref_row(o, ref::Precision::input);
    allow[x] = allow_row(o);
  });
  for (std::size_t x = 0; x < rows.size(); ++x) {
    const std::int64_t q0 = seq_span(p, rows[x].b).q0;
    for (std::int64_t d = 0; d < p.d; ++d)
      j.add(load_row(args.out, p, rows[x], q0, d), oracle[x][d], naive[x][d], allow[x][d]);
  }
  Verdict v = j.finish();
  v.rows = static_cast<std::int64_t>(rows.size());
  return v;
}

Verdict check_dq_rows(const BackwardArgs& args, const Options& options, const std::vector<RowId>& rows) {
  const Problem p = problem_of(args.q, args.k, args.v, args.varlen, options);
  const bool rounded = rounded_inputs(options, args.q);
  Judge j(rounded ? DType::bf16 : args.dq.dtype);
  std::vector<std::vector<double>> oracle(rows.size()), naive(rows.size());  // as check_forward_rows
  ref::parallel_tasks(static_cast<std::int64_t>(rows.size()), [&](std::int64_t x) {
    const RowId& r = rows[x];
    OneRow o = one_row(p, args.q, args.k, args.v, r, args.sinks);
    const SeqSpan sp = seq_span(p, r.b);
    TensorView dout = row_view(args.dout, p, strides(args.dout, p.varlen), r.b, sp.q0, r.i, 1, r.h);
    RoundedRow keep;
    if (rounded) {
      round_row(o, keep);
      dout = to_bf16(dout, keep.dout);
    }
    oracle[x] = ref_dq_row(o, dout, ref::Precision::f64);
    naive[x] = ref_dq_row(o, dout, ref::Precision::input);
  });
  for (std::size_t x = 0; x < rows.size(); ++x) {
    const std::int64_t q0 = seq_span(p, rows[x].b).q0;
    for (std::int64_t d = 0; d < p.d; ++d) j.add(load_row(args.dq, p, rows[x], q0, d), oracle[x][d], naive[x][d]);
  }
  Verdict v = j.finish();
  v.rows = static_cast<std::int64_t>(rows.size());
  return v;
}

}  // namespace flatattn::cli
