#include "src/reference/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "src/core/half.h"
#include "src/core/philox.h"
#include "src/core/validate.h"
#include "src/reference/parallel.h"
#include "src/reference/rows.h"

namespace flatattn::ref {

namespace {

/// Rows [i0, i1) of sparse_element_mask(p, b, h, sp): (i1 - i0) x nk, row-major.
std::vector<char> sparse_mask_rows(const Problem& p, std::int64_t b, std::int64_t h, const SeqSpan& sp,
                                   std::int64_t i0, std::int64_t i1) {
  const SparseSpec& s = p.sparse;
  std::vector<char> vis(static_cast<std::size_t>((i1 - i0) * sp.nk), 0);
  auto globals_has = [&](std::int64_t x) {
    const std::int64_t n = s.global_counts.present() ? s.global_counts.at(b, 0, 0) : s.globals.width;
    for (std::int64_t g = 0; g < n; ++g)
      if (s.globals.at(b, 0, 0, g) == x) return true;
    return false;
  };
  for (std::int64_t r = i0 / s.block_q; r * s.block_q < i1; ++r) {
    for (int full = 0; full < 2; ++full) {
      const IntView& num = full ? s.kv.full_num : s.kv.num;
      const IntView& idx = full ? s.kv.full_idx : s.kv.idx;
      if (!num.present()) continue;
      for (std::int64_t slot = 0; slot < num.at(b, h, r); ++slot) {
        const std::int64_t c = idx.at(b, h, r, slot);
        for (std::int64_t i = std::max(i0, r * s.block_q); i < std::min(i1, (r + 1) * s.block_q); ++i)
          for (std::int64_t j = c * s.block_kv; j < std::min(sp.nk, (c + 1) * s.block_kv); ++j) {
            bool v = true;
            if (!full) {
              if (s.rule == SparseRule::band) {
                v = p.mask.visible(i, j, sp.nq, sp.nk);
              } else if (s.rule == SparseRule::bits) {
                const std::int64_t blk = s.bit_offsets.at(b, h, r) + slot;
                const std::int64_t t = i - r * s.block_q, k = j - c * s.block_kv;
                const std::uint32_t word = static_cast<std::uint32_t>(s.bits[(blk * s.block_q + t) * s.words + k / 32]);
                v = (word >> (k % 32)) & 1u;
              } else {  // local + global: the band, or a global row or key, never right of the diagonal with causal
                const bool left_of_diag = !s.causal || j <= p.mask.diag(i, sp.nq, sp.nk);
                v = p.mask.visible(i, j, sp.nq, sp.nk) || (left_of_diag && (globals_has(i) || globals_has(j)));
              }
            }
            if (v) vis[(i - i0) * sp.nk + j] = 1;
          }
      }
    }
  }
  return vis;
}

}  // namespace

/// The explicit element mask of sequence b, query head h under the call's sparse lists (nq x nk, row-major;
/// 1 = visible): a listed full block is visible everywhere, a listed partial block where the element rule
/// holds (the band of MaskSpec, the block's bits, or local + global), anything else is masked. Written from
/// the definition in include/flatattn/sparse.h, element by element.
std::vector<char> sparse_element_mask(const Problem& p, std::int64_t b, std::int64_t h, const SeqSpan& sp) {
  return sparse_mask_rows(p, b, h, sp, 0, sp.nq);
}

namespace {

void wr(const View& t, std::int64_t off, double v) { store_double(t.data, t.dtype, off, v); }

RowStrides strides_of(const TensorView& t, bool varlen) {
  return varlen ? RowStrides{0, t.stride[0], t.stride[1]} : RowStrides{t.stride[0], t.stride[1], t.stride[2]};
}

View view(const TensorView& t, bool varlen) { return {t.data, t.dtype, strides_of(t, varlen)}; }

void require_cpu(const TensorView& t, const char* name) {
  require(t.device.kind == DeviceKind::cpu, name, "device cuda", "the reference runs on CPU tensors",
          "copy the tensor to the host first");
}

/// The features outside the options, read from the call's own tensors in double: ALiBi's slope of (b, h)
/// and the sink of head h (absent: 0 slope / no sink).
struct Extras {
  TensorView alibi, sinks;
  TensorView bias;  ///< additive bias (Bb, Hb, Mq, Nk), broadcast over its size-1 dims; absent: none
  [[nodiscard]] std::int64_t bias_offset(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    return (bias.shape[0] == 1 ? 0 : b * bias.stride[0]) + (bias.shape[1] == 1 ? 0 : h * bias.stride[1]) +
           (bias.shape[2] == 1 ? 0 : i * bias.stride[2]) + j * bias.stride[3];
  }
  [[nodiscard]] double bias_at(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    return bias.present() ? load_double(bias.data, bias.dtype, bias_offset(b, h, i, j)) : 0.0;
  }
  [[nodiscard]] double slope(std::int64_t b, std::int64_t h) const {
    if (!alibi.present()) return 0;
    return load_double(alibi.data, alibi.dtype, alibi.rank == 2 ? b * alibi.stride[0] + h : h * alibi.stride[0]);
  }
  [[nodiscard]] bool has_sink() const { return sinks.present(); }
  [[nodiscard]] double sink(std::int64_t h) const { return load_double(sinks.data, sinks.dtype, h * sinks.stride[0]); }
};

/// Rows [i0, i1) of S (nq x nk) of one (b, h), as (i1 - i0) x nk: scaled, soft-capped logits with the ALiBi
/// bias -slope |i + nk - nq - j| (Press et al. 2022; the distance to the bottom-right diagonal whatever the
/// mask's alignment); masked entries are -inf. Also returns the softcap's derivative through `dcap_out` for the
/// backward: d(cap tanh(x / cap))/dx = sech^2(x / cap) = 1 / cosh^2(x / cap) from the pre-cap value, exact in
/// fp64 for every x (1 - tanh^2 cancels where |x| >> cap: issue 20, item 6); 1 where there is no cap. Each row
/// is a function of its own index alone: any cut of the rows gives the same values. `qr`: the rows' queries
/// ((i1 - i0) x D doubles, rows.h); `kp`: the keys of (b, h's kv head), pack_panels. Round: Precision::input
/// (products accumulated in fp32, each step rounded to round_dtype).
template <bool Round>
void logits(const Problem& p, const Extras& ex, const double* qr, const double* kp, std::int64_t b, const SeqSpan& sp,
            std::int64_t h, std::int64_t i0, std::int64_t i1, DType round_dtype, std::vector<double>& S,
            std::vector<double>* dcap_out) {
  const double slope = ex.slope(b, h);
  const std::int64_t nk = sp.nk;
  S.assign((i1 - i0) * nk, -std::numeric_limits<double>::infinity());
  if (dcap_out) dcap_out->assign((i1 - i0) * nk, 1.0);
  std::vector<char> vis = p.sparse.on ? sparse_mask_rows(p, b, h, sp, i0, i1) : std::vector<char>((i1 - i0) * nk);
  if (!p.sparse.on)
    for (std::int64_t i = i0; i < i1; ++i)
      for (std::int64_t j = 0; j < nk; ++j) vis[(i - i0) * nk + j] = p.mask.visible(i, j, sp.nq, sp.nk) ? 1 : 0;
  double dots[kPanel];
  for (std::int64_t j0 = 0; j0 < nk; j0 += kPanel) {  // one panel of keys for every row: it stays in cache
    const std::int64_t j1 = std::min(nk, j0 + kPanel);
    const double* panel = kp + (j0 / kPanel) * p.d * kPanel;
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t row = (i - i0) * nk;
      if (std::none_of(vis.begin() + row + j0, vis.begin() + row + j1, [](char x) { return x != 0; })) continue;
      dot_panel<Round>(qr + (i - i0) * p.d, panel, p.d, dots);
      for (std::int64_t j = j0; j < j1; ++j) {
        if (!vis[row + j]) continue;
        double x = p.scale * dots[j - j0];
        if (Round) x = round_to(round_dtype, x);
        if (p.variant.softcap > 0) {
          const double u = x / p.variant.softcap, cu = std::cosh(u);
          if (dcap_out) (*dcap_out)[row + j] = 1.0 / (cu * cu);
          x = p.variant.softcap * std::tanh(u);
          if (Round) x = round_to(round_dtype, x);
        }
        if (slope != 0) {
          x -= slope * static_cast<double>(std::abs(i + sp.nk - sp.nq - j));
          if (Round) x = round_to(round_dtype, x);
        }
        if (ex.bias.present()) {  // S = scale QK^T + bias, before the mask (as SDPA's float attn_mask)
          x += ex.bias_at(b, h, i, j);
          if (Round) x = round_to(round_dtype, x);
        }
        S[row + j] = x;
      }
    }
  }
}

/// Row softmax in place (masked entries -inf become 0); returns LSE per row (-inf for empty rows). With a
/// sink (`sink` not null): the extra logit *sink joins each row's denominator and has no value, so the
/// row's P sums to 1 - e^(sink - LSE) and an empty row keeps P = 0 with LSE = sink.
std::vector<double> softmax_rows(std::vector<double>& S, std::int64_t nq, std::int64_t nk,
                                 const double* sink = nullptr) {
  std::vector<double> lse(nq, -std::numeric_limits<double>::infinity());
  for (std::int64_t i = 0; i < nq; ++i) {
    double* r = S.data() + i * nk;
    double m = sink ? *sink : -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < nk; ++j) m = std::max(m, r[j]);
    if (m == -std::numeric_limits<double>::infinity()) {
      for (std::int64_t j = 0; j < nk; ++j) r[j] = 0;
      continue;
    }
    double sum = sink ? std::exp(*sink - m) : 0.0;
    for (std::int64_t j = 0; j < nk; ++j) sum += (r[j] = std::exp(r[j] - m));
    for (std::int64_t j = 0; j < nk; ++j) r[j] /= sum;
    lse[i] = m + std::log(sum);
  }
  return lse;
}

/// Dropout's multiplier of P_ij in sequence b, query head h: 0 (dropped) or 1 / (1 - p) in fp64; 1 without
/// dropout. The keep decision is dropout_keep() of src/core/philox.h, the definition every backend follows.
struct DropoutRule {
  bool on = false;
  double scale = 1.0;
  DropoutStream stream{};
  explicit DropoutRule(const Problem& p) : on(p.variant.dropout_p > 0.f) {
    if (!on) return;
    scale = 1.0 / (1.0 - static_cast<double>(p.variant.dropout_p));
    stream = dropout_stream(p.variant.dropout_seed, p.variant.dropout_offset, p.variant.dropout_p,
                            p.variant.dropout_hq, p.variant.dropout_row0, p.variant.dropout_col0, p.variant.dropout_bh0);
  }
  [[nodiscard]] double factor(std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) const {
    if (!on) return 1.0;
    return dropout_keep(stream, static_cast<int>(b), static_cast<int>(h), static_cast<int>(i), static_cast<int>(j))
               ? scale
               : 0.0;
  }
};

}  // namespace

namespace {

/// One validated forward call with its views and, per (b, kv head) at index b * Hkv + hk, its keys packed in
/// panels and its values as contiguous rows (rows.h), converted once for every query head and row block.
struct ForwardCall {
  const ForwardArgs* a;
  ValidatedForward vf;
  View q, k, v, out;
  Extras ex;
  DropoutRule drop;
  std::vector<std::vector<double>> keys, values;
  ForwardCall(const ForwardArgs& args, const Options& o)
      : a(&args), vf(validate_forward(args, o, Consumer::oracle)), q(view(args.q, vf.problem.varlen)),
        k(view(args.k, vf.problem.varlen)), v(view(args.v, vf.problem.varlen)), out(view(args.out, vf.problem.varlen)),
        ex{args.alibi_slopes, args.sinks, args.bias}, drop(vf.problem) {
    for (auto [t, n] : {std::pair{&args.q, "q"}, std::pair{&args.k, "k"}, std::pair{&args.v, "v"}, std::pair{&args.out, "out"}})
      require_cpu(*t, n);
    for (auto [t, n] : {std::pair{&args.alibi_slopes, "alibi_slopes"}, std::pair{&args.sinks, "sinks"}, std::pair{&args.bias, "bias"}})
      if (t->present()) require_cpu(*t, n);
    keys.resize(static_cast<std::size_t>(vf.problem.batch * vf.problem.hkv));
    values.resize(keys.size());
  }
  /// Fills keys and values of (b, hk).
  void load_kv(std::int64_t b, std::int64_t hk) {
    const Problem& p = vf.problem;
    const SeqSpan sp = seq_span(p, b);
    const auto at = static_cast<std::size_t>(b * p.hkv + hk);
    keys[at] = pack_panels(rows_of(p, k, b, sp.k0, 0, sp.nk, hk).data(), sp.nk, p.d);
    values[at] = rows_of(p, v, b, sp.k0, 0, sp.nk, hk);
  }
};

/// out and lse of rows [i0, i1) of sequence b, query head h of call c: touches only those rows. Round:
/// Precision::input.
template <bool Round>
void forward_rows(const ForwardCall& c, std::int64_t b, std::int64_t h, std::int64_t i0, std::int64_t i1) {
  const ForwardArgs& a = *c.a;
  const Problem& p = c.vf.problem;
  const View& out = c.out;
  const Extras& ex = c.ex;
  const DropoutRule& drop = c.drop;
  const SeqSpan sp = seq_span(p, b);
  const std::int64_t hk = h / p.group(), nk = sp.nk, d = p.d;
  const auto kv = static_cast<std::size_t>(b * p.hkv + hk);
  std::vector<double> S;
  logits<Round>(p, ex, rows_of(p, c.q, b, sp.q0, i0, i1, h).data(), c.keys[kv].data(), b, sp, h, i0, i1, a.q.dtype, S,
                nullptr);
  const double sink = ex.has_sink() ? ex.sink(h) : 0.0;
  const std::vector<double> lse = softmax_rows(S, i1 - i0, nk, ex.has_sink() ? &sink : nullptr);
  for (std::int64_t i = i0; i < i1; ++i) {
    double* Si = S.data() + (i - i0) * nk;
    if (Round)
      for (std::int64_t j = 0; j < nk; ++j) Si[j] = round_to(a.q.dtype, Si[j]);
    if (drop.on)  // P Z / (1 - p) after the softmax: the LSE stays that of the undropped P
      for (std::int64_t j = 0; j < nk; ++j) {
        const double x = Si[j] * drop.factor(b, h, i, j);
        Si[j] = Round ? round_to(a.q.dtype, x) : x;
      }
  }
  // O = P V: each row's sum over ascending j (zeros of P skipped); keys in chunks, each chunk's value rows
  // used by every row of the block while they are in cache.
  std::vector<double> acc((i1 - i0) * d, 0.0);
  const double* V = c.values[kv].data();
  Terms terms;
  for (std::int64_t j0 = 0; j0 < nk; j0 += kTerms)
    for (std::int64_t i = i0; i < i1; ++i) {
      const double* Si = S.data() + (i - i0) * nk;
      for (std::int64_t j = j0; j < std::min(nk, j0 + kTerms); ++j) terms.add(Si[j], V + j * d);
      terms.flush<Round>(acc.data() + (i - i0) * d, d);
    }
  for (std::int64_t i = i0; i < i1; ++i) {
    const std::int64_t oo = row_offset(p, out.s, b, sp.q0, i, h);
    for (std::int64_t e = 0; e < d; ++e) {
      const double x = acc[(i - i0) * d + e];
      wr(out, oo + e, Round ? round_to(a.q.dtype, x) : x);
    }
    if (a.lse.present()) {
      const std::int64_t lo = p.varlen ? h * a.lse.stride[0] + (sp.q0 + i) * a.lse.stride[1]
                                       : b * a.lse.stride[0] + h * a.lse.stride[1] + i * a.lse.stride[2];
      store_double(a.lse.data, a.lse.dtype, lo, lse[i - i0]);
    }
  }
}

}  // namespace

void forward(const ForwardArgs& a, const Options& o, Precision precision) { forward_each({&a, 1}, o, precision); }

void forward_each(std::span<const ForwardArgs> calls, const Options& o, Precision precision) {
  std::vector<ForwardCall> c;  // every call validated before any output is written
  c.reserve(calls.size());
  std::int64_t rows = 0;
  for (const ForwardArgs& a : calls) {
    c.emplace_back(a, o);
    const Problem& p = c.back().vf.problem;
    for (std::int64_t b = 0; b < p.batch; ++b) rows += seq_span(p, b).nq * p.hq;
  }
  // Keys and values converted once per (call, b, kv head), in parallel (each task fills its own).
  struct Kv {
    std::size_t call;
    std::int64_t b, hk;
  };
  std::vector<Kv> kvs;
  for (std::size_t i = 0; i < c.size(); ++i)
    for (std::int64_t b = 0; b < c[i].vf.problem.batch; ++b)
      for (std::int64_t hk = 0; hk < c[i].vf.problem.hkv; ++hk) kvs.push_back({i, b, hk});
  parallel_tasks(static_cast<std::int64_t>(kvs.size()), [&](std::int64_t t) {
    const Kv& x = kvs[static_cast<std::size_t>(t)];
    c[x.call].load_kv(x.b, x.hk);
  });
  // Tasks: blocks of rows of one (call, b, h); rows are independent, so the cut changes no value.
  struct Task {
    std::size_t call;
    std::int64_t b, h, i0, i1;
  };
  std::vector<Task> tasks;
  const std::int64_t per = block_rows(rows);
  for (std::size_t i = 0; i < c.size(); ++i) {
    const Problem& p = c[i].vf.problem;
    for (std::int64_t b = 0; b < p.batch; ++b)
      for (std::int64_t h = 0; h < p.hq; ++h)
        for (std::int64_t i0 = 0, nq = seq_span(p, b).nq; i0 < nq; i0 += per) tasks.push_back({i, b, h, i0, std::min(nq, i0 + per)});
  }
  const bool round = precision == Precision::input;
  parallel_tasks(static_cast<std::int64_t>(tasks.size()), [&](std::int64_t t) {
    const Task& k = tasks[static_cast<std::size_t>(t)];
    if (round) {
      forward_rows<true>(c[k.call], k.b, k.h, k.i0, k.i1);
    } else {
      forward_rows<false>(c[k.call], k.b, k.h, k.i0, k.i1);
    }
  });
}

namespace {

/// ref::backward after validation; Round: Precision::input.
template <bool Round>
void backward_run(const BackwardArgs& a, const Problem& p) {
  const bool vl = p.varlen;
  const View q = view(a.q, vl), k = view(a.k, vl), v = view(a.v, vl), dout = view(a.dout, vl);
  const View dq = view(a.dq, vl), dk = view(a.dk, vl), dv = view(a.dv, vl);
  const DType dt = a.q.dtype;
  auto r = [&](double x) { return Round ? round_to(dt, x) : x; };
  const Extras ex{a.alibi_slopes, a.sinks, a.bias};
  // The bias's gradient dS (before the scale), summed over the bias's broadcast dims; elements no visible
  // (i, j) reaches stay 0. Indexed like the bias (Bb, Hb, Mq, Nk), contiguous, in double.
  std::vector<double> dbias;
  if (a.dbias.present()) dbias.assign(static_cast<std::size_t>(a.dbias.numel()), 0.0);
  auto dbias_index = [&](std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
    const auto& sh = a.dbias.shape;
    return ((((sh[0] == 1 ? 0 : b) * sh[1] + (sh[1] == 1 ? 0 : h)) * sh[2] + (sh[2] == 1 ? 0 : i)) * sh[3]) + j;
  };
  // Attention sinks' gradient: dsink_h = -sum_{b,i} e^(sink_h - LSE_i) D_i (the sink's probability times D_i).
  std::vector<double> dsinks(p.hq, 0.0);
  const DropoutRule drop(p);
  const std::int64_t group = p.group(), d = p.d;
  // Per sequence, kv head and query head of its group, in this order (that of the single-threaded loop):
  //   1. rows in parallel: P, dP, D_i and dS of row i and its dq row (a row's values depend on that row alone);
  //   2. on this thread, in (i, j) order: the row terms of dsinks and dbias (sums across rows, heads, sequences);
  //   3. keys in parallel: dK_j, dV_j += the rows' terms in ascending i (each key's sums in the loop's order).
  // Every value is thus bitwise the single-threaded loop's, whatever the thread count. q, k, v and dO are read
  // once per (sequence, head) into contiguous rows (rows.h); every sum keeps the order of the element-wise loop.
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const SeqSpan sp = seq_span(p, b);
    const std::int64_t nq = sp.nq, nk = sp.nk;
    // (nq, nk) of the current head: P (rounded), dP then dS (scaled, rounded), dropout's factor, dS for dbias.
    std::vector<double> P(nq * nk), dP(nq * nk), Z(drop.on ? nq * nk : 0), DB(dbias.empty() ? 0 : nq * nk);
    std::vector<double> lse(nq), D(nq);
    const std::int64_t rows_per = block_rows(nq), keys_per = block_rows(nk);
    for (std::int64_t hk = 0; hk < p.hkv; ++hk) {
      // dK, dV accumulate over the query heads of a group: one double buffer per kv head.
      std::vector<double> gk(nk * d, 0.0), gv(nk * d, 0.0);
      const std::vector<double> kr = rows_of(p, k, b, sp.k0, 0, nk, hk);  // dS K
      const std::vector<double> kp = pack_panels(kr.data(), nk, d);      // S = Q K^T
      const std::vector<double> vp = pack_panels(rows_of(p, v, b, sp.k0, 0, nk, hk).data(), nk, d);  // dO V^T
      for (std::int64_t h = hk * group; h < (hk + 1) * group; ++h) {
        const double sink = ex.has_sink() ? ex.sink(h) : 0.0;
        const std::vector<double> qr = rows_of(p, q, b, sp.q0, 0, nq, h), dor = rows_of(p, dout, b, sp.q0, 0, nq, h);
        parallel_tasks((nq + rows_per - 1) / rows_per, [&](std::int64_t t) {  // 1.
          const std::int64_t i0 = t * rows_per, i1 = std::min(nq, i0 + rows_per);
          std::vector<double> S, Dcap;
          logits<Round>(p, ex, qr.data() + i0 * d, kp.data(), b, sp, h, i0, i1, dt, S, &Dcap);
          const std::vector<double> l = softmax_rows(S, i1 - i0, nk, ex.has_sink() ? &sink : nullptr);
          for (std::int64_t i = i0; i < i1; ++i) {
            double* Pi = P.data() + i * nk;
            double* dPi = dP.data() + i * nk;
            for (std::int64_t j = 0; j < nk; ++j) Pi[j] = r(S[(i - i0) * nk + j]), dPi[j] = 0.0;
            lse[i] = l[i - i0];
            D[i] = 0;
          }
          // dP_ij = dO_i . V_j where P_ij != 0, and D_i = sum_j P_ij dP_ij in ascending j (panels in order).
          double dots[kPanel];
          for (std::int64_t j0 = 0; j0 < nk; j0 += kPanel) {
            const std::int64_t j1 = std::min(nk, j0 + kPanel);
            const double* panel = vp.data() + (j0 / kPanel) * d * kPanel;
            for (std::int64_t i = i0; i < i1; ++i) {
              const double* Pi = P.data() + i * nk;
              if (std::all_of(Pi + j0, Pi + j1, [](double x) { return x == 0; })) continue;
              dot_panel<Round>(dor.data() + i * d, panel, d, dots);
              double Di = D[i];
              for (std::int64_t j = j0; j < j1; ++j) {
                const double pij = Pi[j];
                if (pij == 0) continue;
                const double acc = dots[j - j0];
                // Dropout (FlashAttention Alg. 4): dP = (dO V^T) Z / (1 - p), dV from P Z / (1 - p); D_i = sum_j P_ij dP_ij.
                const double z = drop.factor(b, h, i, j);
                if (drop.on) Z[i * nk + j] = z;
                const double dpij = drop.on ? r(r(acc) * z) : r(acc);
                dP[i * nk + j] = dpij;
                Di += pij * dpij;
              }
              D[i] = Di;
            }
          }
          for (std::int64_t i = i0; i < i1; ++i) {
            // dS = P * (dP - D_i), then through the softcap: d(c tanh(x/c))/dx = sech^2(x/c); then the scale.
            const double* Pi = P.data() + i * nk;
            double* dPi = dP.data() + i * nk;
            const double Di = D[i];
            for (std::int64_t j = 0; j < nk; ++j) {
              double ds = Pi[j] * (dPi[j] - Di);
              if (p.variant.softcap > 0) ds *= Dcap[(i - i0) * nk + j];
              if (!dbias.empty()) DB[i * nk + j] = r(ds);  // dL/dbias = dL/dS
              dPi[j] = r(r(ds) * p.scale);
            }
          }
          // dQ = dS K: each row's sum over ascending j (zeros of dS skipped), keys in chunks as in the forward.
          std::vector<double> acc((i1 - i0) * d, 0.0);
          Terms terms;
          for (std::int64_t j0 = 0; j0 < nk; j0 += kTerms)
            for (std::int64_t i = i0; i < i1; ++i) {
              for (std::int64_t j = j0; j < std::min(nk, j0 + kTerms); ++j) terms.add(dP[i * nk + j], kr.data() + j * d);
              terms.flush<Round>(acc.data() + (i - i0) * d, d);
            }
          for (std::int64_t i = i0; i < i1; ++i) {
            const std::int64_t dqo = row_offset(p, dq.s, b, sp.q0, i, h);
            for (std::int64_t e = 0; e < d; ++e) wr(dq, dqo + e, r(acc[(i - i0) * d + e]));
          }
        });
        for (std::int64_t i = 0; i < nq; ++i) {  // 2.
          // D_i = sum_j P_ij dP_ij = dO_i . O_i; the sink's probability e^(sink - LSE_i) takes -D_i of it.
          if (ex.has_sink() && lse[i] != -std::numeric_limits<double>::infinity())
            dsinks[h] -= std::exp(sink - lse[i]) * D[i];
          if (!dbias.empty())
            for (std::int64_t j = 0; j < nk; ++j) dbias[dbias_index(b, h, i, j)] += DB[i * nk + j];
        }
        parallel_tasks((nk + keys_per - 1) / keys_per, [&](std::int64_t t) {  // 3.
          // Rows in chunks, each chunk's q and dO rows used by every key of the task while they are in cache.
          const std::int64_t j0 = t * keys_per, j1 = std::min(nk, (t + 1) * keys_per);
          Terms tv, tk;
          for (std::int64_t c0 = 0; c0 < nq; c0 += kTerms)
            for (std::int64_t j = j0; j < j1; ++j) {
              for (std::int64_t i = c0; i < std::min(nq, c0 + kTerms); ++i) {
                const double pij = P[i * nk + j];
                if (pij != 0) tv.push(drop.on ? r(pij * Z[i * nk + j]) : pij, dor.data() + i * d);  // a dropped 0 too
                tk.add(dP[i * nk + j], qr.data() + i * d);
              }
              tv.flush<Round>(gv.data() + j * d, d);
              tk.flush<Round>(gk.data() + j * d, d);
            }
        });
      }
      parallel_ranges(nk, keys_per, [&](std::int64_t j0, std::int64_t j1) {
        for (std::int64_t j = j0; j < j1; ++j) {
          const std::int64_t dko = row_offset(p, dk.s, b, sp.k0, j, hk);
          const std::int64_t dvo = row_offset(p, dv.s, b, sp.k0, j, hk);
          for (std::int64_t e = 0; e < d; ++e) {
            wr(dk, dko + e, r(gk[j * d + e]));
            wr(dv, dvo + e, r(gv[j * d + e]));
          }
        }
      });
    }
  }
  if (a.dsinks.present())
    for (std::int64_t h = 0; h < p.hq; ++h) store_double(a.dsinks.data, a.dsinks.dtype, h * a.dsinks.stride[0], r(dsinks[h]));
  if (a.dbias.present()) {
    const auto& sh = a.dbias.shape;
    for (std::int64_t b = 0; b < sh[0]; ++b)
      for (std::int64_t h = 0; h < sh[1]; ++h)
        for (std::int64_t i = 0; i < sh[2]; ++i)
          for (std::int64_t j = 0; j < sh[3]; ++j) {
            const std::int64_t off = (sh[0] == 1 ? 0 : b * a.dbias.stride[0]) + (sh[1] == 1 ? 0 : h * a.dbias.stride[1]) +
                                     (sh[2] == 1 ? 0 : i * a.dbias.stride[2]) + j * a.dbias.stride[3];
            store_double(a.dbias.data, a.dbias.dtype, off, r(dbias[((b * sh[1] + h) * sh[2] + i) * sh[3] + j]));
          }
  }
}

}  // namespace

void backward(const BackwardArgs& a, const Options& o, Precision precision) {
  const ValidatedBackward vb = validate_backward(a, o, Consumer::oracle);
  for (auto [t, n] : {std::pair{&a.q, "q"}, std::pair{&a.k, "k"}, std::pair{&a.v, "v"}, std::pair{&a.dout, "dout"},
                      std::pair{&a.dq, "dq"}, std::pair{&a.dk, "dk"}, std::pair{&a.dv, "dv"}})
    require_cpu(*t, n);
  for (auto [t, n] : {std::pair{&a.alibi_slopes, "alibi_slopes"}, std::pair{&a.sinks, "sinks"},
                      std::pair{&a.dsinks, "dsinks"}, std::pair{&a.bias, "bias"}, std::pair{&a.dbias, "dbias"}})
    if (t->present()) require_cpu(*t, n);
  if (precision == Precision::input) {
    backward_run<true>(a, vb.problem);
  } else {
    backward_run<false>(a, vb.problem);
  }
}

}  // namespace flatattn::ref
