#include "tests/common/harness.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <sstream>

#include "src/core/half.h"
#include "src/reference/reference.h"

namespace flatattn::testing {

HostTensor HostTensor::make(DType dtype, std::vector<std::int64_t> shape, std::vector<int> perm, std::int64_t pad) {
  HostTensor t;
  t.dtype = dtype;
  t.shape = shape;
  const int r = static_cast<int>(shape.size());
  if (perm.empty()) {
    perm.resize(r);
    std::iota(perm.begin(), perm.end(), 0);
  }
  t.stride.assign(r, 0);
  std::int64_t st = 1;
  for (int i = r - 1; i >= 0; --i) {
    const int dim = perm[i];
    t.stride[dim] = st;
    st *= shape[dim] + (i == r - 1 ? pad : 0);
  }
  t.storage.assign(static_cast<std::size_t>(std::max<std::int64_t>(st, 1)) * element_size(dtype), 0);
  return t;
}

TensorView HostTensor::view(Device device) const {
  TensorView v;
  v.data = const_cast<unsigned char*>(storage.data());
  v.dtype = dtype;
  v.device = device;
  v.rank = static_cast<int>(shape.size());
  for (int i = 0; i < v.rank; ++i) {
    v.shape[i] = shape[i];
    v.stride[i] = stride[i];
  }
  return v;
}

std::int64_t HostTensor::numel() const {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::int64_t HostTensor::offset(std::int64_t logical) const {
  std::int64_t off = 0;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    off += (logical % shape[i]) * stride[i];
    logical /= shape[i];
  }
  return off;
}

double HostTensor::at(std::int64_t logical) const { return load_double(storage.data(), dtype, offset(logical)); }

void HostTensor::set(std::int64_t logical, double v) {
  store_double(storage.data(), dtype, offset(logical), v);
}

void HostTensor::fill_normal(std::mt19937_64& rng, double sd, double mean) {
  std::normal_distribution<double> nd(mean, sd);
  for (std::int64_t i = 0; i < numel(); ++i) set(i, nd(rng));
}

void HostTensor::poison() {
  const std::int64_t n = static_cast<std::int64_t>(storage.size() / element_size(dtype));
  for (std::int64_t i = 0; i < n; ++i) store_double(storage.data(), dtype, i, std::numeric_limits<double>::quiet_NaN());
}

std::string Case::name() const {
  std::ostringstream s;
  s << flatattn::name(dtype) << " B" << batch << " Nq" << nq << " Nk" << nk << " Hq" << hq << " Hkv" << hkv << " D"
    << d;
  if (options.causal) s << (options.causal_align == CausalAlign::bottom_right ? " causal-br" : " causal-tl");
  if (options.window.left >= 0 || options.window.right >= 0)
    s << " win(" << options.window.left << "," << options.window.right << ")"
      << (options.causal_align == CausalAlign::top_left ? "-tl" : "");
  if (options.softcap > 0) s << " softcap" << options.softcap;
  if (varlen) {
    s << " varlen[";
    for (std::size_t i = 0; i < seqlens_q.size(); ++i) s << (i ? "," : "") << seqlens_q[i] << "/" << seqlens_k[i];
    s << "]";
  }
  if (strided) s << " strided";
  if (input_sd != 1.0) s << " sd" << input_sd;
  if (options.dataflow != Dataflow::automatic) s << " " << flatattn::name(options.dataflow);
  return s.str();
}

namespace {

HostTensor make_rows(const Case& c, DType dt, std::int64_t rows_or_n, std::int64_t h, bool strided) {
  if (c.varlen)
    return strided ? HostTensor::make(dt, {rows_or_n, h, c.d}, {1, 0, 2}, 8) : HostTensor::make(dt, {rows_or_n, h, c.d});
  return strided ? HostTensor::make(dt, {c.batch, rows_or_n, h, c.d}, {0, 2, 1, 3}, 8)
                 : HostTensor::make(dt, {c.batch, rows_or_n, h, c.d});
}

std::int64_t total(const std::vector<std::int32_t>& v) { return std::accumulate(v.begin(), v.end(), std::int64_t{0}); }

}  // namespace

CaseTensors make_case(const Case& c0, std::mt19937_64& rng, bool with_backward) {
  CaseTensors t;
  t.c = c0;
  Case& c = t.c;
  if (c.varlen) {
    if (c.seqlens_q.empty()) c.seqlens_q.assign(c.batch, static_cast<std::int32_t>(c.nq));
    if (c.seqlens_k.empty()) c.seqlens_k.assign(c.batch, static_cast<std::int32_t>(c.nk));
    c.batch = static_cast<std::int64_t>(c.seqlens_q.size());
  }
  const std::int64_t nq = c.varlen ? total(c.seqlens_q) : c.nq;
  const std::int64_t nk = c.varlen ? total(c.seqlens_k) : c.nk;
  t.q = make_rows(c, c.dtype, nq, c.hq, c.strided);
  t.k = make_rows(c, c.dtype, nk, c.hkv, c.strided);
  t.v = make_rows(c, c.dtype, nk, c.hkv, c.strided);
  t.out = make_rows(c, c.dtype, nq, c.hq, c.strided);
  t.q.fill_normal(rng, c.input_sd);
  t.k.fill_normal(rng, c.input_sd);
  t.v.fill_normal(rng, 1.0);
  t.out.poison();
  t.lse = c.varlen ? HostTensor::make(DType::f32, {c.hq, nq}) : HostTensor::make(DType::f32, {c.batch, c.hq, c.nq});
  t.lse.poison();
  if (c.varlen) {
    t.cu_q = HostTensor::make(DType::i32, {c.batch + 1});
    t.cu_k = HostTensor::make(DType::i32, {c.batch + 1});
    auto* cq = static_cast<std::int32_t*>(t.cu_q.data());
    auto* ck = static_cast<std::int32_t*>(t.cu_k.data());
    cq[0] = ck[0] = 0;
    for (std::int64_t b = 0; b < c.batch; ++b) {
      cq[b + 1] = cq[b] + c.seqlens_q[b];
      ck[b + 1] = ck[b] + c.seqlens_k[b];
    }
    c.nq = *std::max_element(c.seqlens_q.begin(), c.seqlens_q.end());
    c.nk = *std::max_element(c.seqlens_k.begin(), c.seqlens_k.end());
  }
  if (with_backward) {
    t.dout = make_rows(c, c.dtype, nq, c.hq, c.strided);
    t.dout.fill_normal(rng, 1.0);
    t.dq = make_rows(c, c.dtype, nq, c.hq, c.strided);
    t.dk = make_rows(c, c.dtype, nk, c.hkv, c.strided);
    t.dv = make_rows(c, c.dtype, nk, c.hkv, c.strided);
    t.dq.poison();
    t.dk.poison();
    t.dv.poison();
  }
  return t;
}

std::optional<Varlen> CaseTensors::varlen(Device device) const {
  if (!c.varlen) return std::nullopt;
  Varlen v;
  v.cu_seqlens_q = cu_q.view(device);
  v.cu_seqlens_k = cu_k.view(device);
  v.max_seqlen_q = c.nq;
  v.max_seqlen_k = c.nk;
  return v;
}

ForwardArgs CaseTensors::forward_args(Device device) const {
  ForwardArgs a;
  a.q = q.view(device);
  a.k = k.view(device);
  a.v = v.view(device);
  a.out = out.view(device);
  if (c.options.return_lse) a.lse = lse.view(device);
  a.varlen = varlen(device);
  return a;
}

BackwardArgs CaseTensors::backward_args(Device device) const {
  BackwardArgs a;
  a.dout = dout.view(device);
  a.q = q.view(device);
  a.k = k.view(device);
  a.v = v.view(device);
  a.out = out.view(device);
  a.lse = lse.view(device);
  a.dq = dq.view(device);
  a.dk = dk.view(device);
  a.dv = dv.view(device);
  a.varlen = varlen(device);
  return a;
}

ForwardOracle oracle_forward(const CaseTensors& t) {
  ForwardOracle o;
  o.out = HostTensor::make(DType::f64, t.out.shape);
  o.lse = HostTensor::make(DType::f64, t.lse.shape);
  o.naive_out = HostTensor::make(t.c.dtype, t.out.shape);
  o.out.poison();
  o.lse.poison();
  o.naive_out.poison();
  Options opt = t.c.options;
  opt.return_lse = true;
  ForwardArgs a;
  a.q = t.q.view();
  a.k = t.k.view();
  a.v = t.v.view();
  a.varlen = t.varlen();
  a.out = o.out.view();
  a.lse = o.lse.view();
  ref::forward(a, opt, ref::Precision::f64);
  a.out = o.naive_out.view();
  a.lse = {};
  opt.return_lse = false;
  ref::forward(a, opt, ref::Precision::input);
  return o;
}

namespace {
/// ref::backward of case t at `precision` into dq/dk/dv of dtype `dtype` (poisoned first).
BackwardOracle reference_backward(const CaseTensors& t, ref::Precision precision, DType dtype) {
  BackwardOracle o;
  o.dq = HostTensor::make(dtype, t.dq.shape);
  o.dk = HostTensor::make(dtype, t.dk.shape);
  o.dv = HostTensor::make(dtype, t.dv.shape);
  o.dq.poison();
  o.dk.poison();
  o.dv.poison();
  // out and lse are validated but unused by the reference; pass f64 placeholders of the right shapes.
  HostTensor out = HostTensor::make(DType::f64, t.out.shape), lse = HostTensor::make(DType::f64, t.lse.shape);
  BackwardArgs a;
  a.dout = t.dout.view();
  a.q = t.q.view();
  a.k = t.k.view();
  a.v = t.v.view();
  a.out = out.view();
  a.lse = lse.view();
  a.dq = o.dq.view();
  a.dk = o.dk.view();
  a.dv = o.dv.view();
  a.varlen = t.varlen();
  ref::backward(a, t.c.options, precision);
  return o;
}
}  // namespace

BackwardOracle oracle_backward(const CaseTensors& t) { return reference_backward(t, ref::Precision::f64, DType::f64); }

BackwardOracle naive_lowp_backward(const CaseTensors& t) {
  return reference_backward(t, ref::Precision::input, t.c.dtype);
}

Verdict judge(const HostTensor& out, const HostTensor& ref, const HostTensor* naive, DType dtype, double rel_tol) {
  // fp32: the oracle's low-precision yardstick sums in double, so it beats any fp32 kernel; add
  // docs/design.md's fp32 tolerance (1e-5 relative to max|ref|).
  if (dtype == DType::f32) rel_tol = std::max(rel_tol, 1e-5);
  Verdict v;
  double num = 0, den = 0, maxref = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.at(i), o = out.at(i);
    if (!std::isfinite(o) || !std::isfinite(r)) {
      if (!(std::isinf(o) && o == r)) ++v.nonfinite;
      continue;
    }
    v.max_err = std::max(v.max_err, std::abs(o - r));
    num += (o - r) * (o - r);
    den += r * r;
    maxref = std::max(maxref, std::abs(r));
    if (naive) v.naive_err = std::max(v.naive_err, std::abs(naive->at(i) - r));
    const double f = std::abs(round_to(dtype, round_to(dtype, r + 0.3) - 0.3) - r);
    v.floor = std::max(v.floor, 2.0 * f);
  }
  v.rel_err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  v.bound = 2.0 * v.naive_err + v.floor + rel_tol * maxref;
  v.pass = v.nonfinite == 0 && v.max_err <= v.bound;
  return v;
}

Verdict judge_lse(const HostTensor& lse, const HostTensor& ref, double tol) {
  Verdict v;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.at(i), o = lse.at(i);
    if (std::isinf(r) || std::isinf(o) || std::isnan(o)) {
      if (!(std::isinf(r) && r == o)) ++v.nonfinite;
      continue;
    }
    const double e = std::abs(o - r) / std::max(1.0, std::abs(r));
    v.max_err = std::max(v.max_err, e);
  }
  v.bound = tol;
  v.pass = v.nonfinite == 0 && v.max_err <= tol;
  return v;
}

std::string Verdict::str() const {
  std::ostringstream s;
  s << "max_err=" << max_err << " bound=" << bound << " (2*naive=" << 2 * naive_err << " + floor=" << floor
    << ") rel=" << rel_err << " nonfinite=" << nonfinite << (pass ? " PASS" : " FAIL");
  return s.str();
}

Case random_case(std::mt19937_64& rng, DType dtype, std::int64_t max_n) {
  auto pick = [&](auto... xs) {
    const std::int64_t v[] = {static_cast<std::int64_t>(xs)...};
    return v[std::uniform_int_distribution<std::size_t>(0, sizeof...(xs) - 1)(rng)];
  };
  auto uni = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
  Case c;
  c.dtype = dtype;
  c.d = pick(16, 32, 40, 64, 80, 96, 128);
  c.hkv = pick(1, 1, 2, 3);
  c.hq = c.hkv * pick(1, 1, 2, 4);
  c.batch = uni(1, 3);
  c.nq = uni(1, max_n);
  c.nk = std::uniform_int_distribution<int>(0, 2)(rng) == 0 ? c.nq : uni(1, max_n);
  c.options.causal = uni(0, 2) == 0;
  c.options.causal_align = uni(0, 3) == 0 ? CausalAlign::top_left : CausalAlign::bottom_right;
  if (uni(0, 3) == 0) {
    c.options.window.left = pick(-1, 0, 5, 31, 64);
    c.options.window.right = c.options.causal ? pick(-1, 0) : pick(-1, 0, 3, 40);
  }
  if (uni(0, 4) == 0) c.options.softcap = static_cast<float>(pick(5, 30));
  c.options.return_lse = uni(0, 3) != 0;
  c.varlen = uni(0, 3) == 0;
  if (c.varlen) {
    for (std::int64_t b = 0; b < c.batch + 1; ++b) {
      c.seqlens_q.push_back(static_cast<std::int32_t>(uni(0, max_n)));
      c.seqlens_k.push_back(static_cast<std::int32_t>(uni(0, 3) == 0 ? c.seqlens_q.back() : uni(0, max_n)));
    }
  }
  c.strided = uni(0, 2) == 0;
  c.input_sd = uni(0, 4) == 0 ? 3.0 : 1.0;
  return c;
}

std::uint64_t fresh_seed() {
  if (const char* s = std::getenv("FLATATTN_SEED")) return std::strtoull(s, nullptr, 10);
  return static_cast<std::uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count()) ^
         std::random_device{}();
}

}  // namespace flatattn::testing
