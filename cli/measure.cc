#include "cli/measure.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "cli/buffers.h"
#include "cli/child.h"
#include "cli/device.h"
#include "cli/engine.h"
#include "cli/flags.h"
#include "cli/sample_check.h"
#include "cli/sparse_workload.h"
#include "cli/table.h"
#include "src/check/sparse_case.h"
#include "src/check/yardstick.h"

namespace flatattn::cli {

namespace {

using nlohmann::json;

/// The tensors of one measurement, built identically in every process from the workload's seed.
struct Tensors {
  Tensor q, k, v, out, lse, dout, dq, dk, dv;
  Tensor alibi, sinks, dsinks;  ///< fp32 (Hq) each, when the workload has them
  Tensor bias, dbias;           ///< the additive bias and its gradient (--bias), in the workload's dtype
  /// Sparse workloads: the block lists and globals (cli/sparse_workload.h; stable addresses for `mirrors`),
  /// and their device copies (--device cuda).
  std::unique_ptr<check::CaseTensors> mask;
  std::map<const check::HostTensor*, DeviceMirror> mirrors;
};

Tensors make_tensors(const Workload& w, Mode mode) {
  Tensors t;
  t.q = Tensor::make(w.dtype, {w.batch, w.nq, w.hq, w.d});
  t.k = Tensor::make(w.dtype, {w.batch, w.nk, w.hkv, w.d});
  t.v = Tensor::make(w.dtype, {w.batch, w.nk, w.hkv, w.d});
  t.out = Tensor::make(w.dtype, {w.batch, w.nq, w.hq, w.d});
  t.q.fill_normal(w.seed ^ 0x51);
  t.k.fill_normal(w.seed ^ 0x4b);
  t.v.fill_normal(w.seed ^ 0x56);
  t.out.poison();
  if (w.alibi) {  // BLOOM's slopes (Press et al. 2022, Sec. 3)
    t.alibi = Tensor::make(DType::f32, {w.hq});
    for (std::int64_t h = 0; h < w.hq; ++h) t.alibi.set(h, std::exp2(-8.0 * double(h + 1) / double(w.hq)));
  }
  if (w.sinks) {
    t.sinks = Tensor::make(DType::f32, {w.hq});
    t.sinks.fill_normal(w.seed ^ 0x73);
    if (mode != Mode::fwd) {
      t.dsinks = Tensor::make(DType::f32, {w.hq});
      t.dsinks.poison();
    }
  }
  if (!w.bias.empty()) {
    const auto has = [&](char c) { return w.bias.find(c) != std::string::npos; };
    const std::vector<std::int64_t> shape = {has('b') ? w.batch : 1, has('h') ? w.hq : 1, has('q') ? w.nq : 1, w.nk};
    t.bias = Tensor::make(w.dtype, shape);
    t.bias.fill_normal(w.seed ^ 0x62);
    if (mode != Mode::fwd) {
      t.dbias = Tensor::make(w.dtype, shape);
      t.dbias.poison();
    }
  }
  if (w.sparse()) t.mask = std::make_unique<check::CaseTensors>(sparse_lists(w));
  if (mode != Mode::fwd) {
    t.lse = Tensor::make(DType::f32, {w.batch, w.hq, w.nq});
    t.dout = Tensor::make(w.dtype, {w.batch, w.nq, w.hq, w.d});
    t.dq = Tensor::make(w.dtype, {w.batch, w.nq, w.hq, w.d});
    t.dk = Tensor::make(w.dtype, {w.batch, w.nk, w.hkv, w.d});
    t.dv = Tensor::make(w.dtype, {w.batch, w.nk, w.hkv, w.d});
    t.lse.poison();
    t.dout.fill_normal(w.seed ^ 0x64);
    t.dq.poison();
    t.dk.poison();
    t.dv.poison();
  }
  return t;
}

std::vector<Tensor*> all(Tensors& t, Mode mode) {
  std::vector<Tensor*> v = {&t.q, &t.k, &t.v, &t.out};
  if (mode != Mode::fwd) v.insert(v.end(), {&t.lse, &t.dout, &t.dq, &t.dk, &t.dv});
  for (Tensor* x : {&t.alibi, &t.sinks, &t.dsinks, &t.bias, &t.dbias})
    if (x->numel() > 0) v.push_back(x);
  return v;
}

/// The sparse arguments of t (none for dense workloads) on `where`.
void add_sparse(const Tensors& t, DeviceKind where, std::optional<BlockSparse>& bs, std::optional<LocalGlobal>& lg) {
  if (!t.mask) return;
  const check::ViewOf view = [&t, where](const check::HostTensor& h) {
    return where == DeviceKind::cuda ? t.mirrors.at(&h).view(h) : h.view(Device::cpu());
  };
  bs = check::sparse_args(*t.mask, view);
  lg = check::local_global_args(*t.mask, view);
}

ForwardArgs fwd_args(const Tensors& t, DeviceKind where, bool with_lse) {
  ForwardArgs a;
  a.q = t.q.view(where);
  a.k = t.k.view(where);
  a.v = t.v.view(where);
  a.out = t.out.view(where);
  if (with_lse) a.lse = t.lse.view(where);
  if (t.alibi.numel() > 0) a.alibi_slopes = t.alibi.view(where);
  if (t.sinks.numel() > 0) a.sinks = t.sinks.view(where);
  if (t.bias.numel() > 0) a.bias = t.bias.view(where);
  add_sparse(t, where, a.block_sparse, a.local_global);
  return a;
}

BackwardArgs bwd_args(const Tensors& t, DeviceKind where) {
  BackwardArgs a;
  a.dout = t.dout.view(where);
  a.q = t.q.view(where);
  a.k = t.k.view(where);
  a.v = t.v.view(where);
  a.out = t.out.view(where);
  a.lse = t.lse.view(where);
  a.dq = t.dq.view(where);
  a.dk = t.dk.view(where);
  a.dv = t.dv.view(where);
  if (t.alibi.numel() > 0) a.alibi_slopes = t.alibi.view(where);
  if (t.sinks.numel() > 0) a.sinks = t.sinks.view(where);
  if (t.dsinks.numel() > 0) a.dsinks = t.dsinks.view(where);
  if (t.bias.numel() > 0) a.bias = t.bias.view(where);
  if (t.dbias.numel() > 0) a.dbias = t.dbias.view(where);
  add_sparse(t, where, a.block_sparse, a.local_global);
  return a;
}

constexpr double kOracleBudget = 4e9;   // the leading sequences checked: a few seconds on 2 cores

/// Sequences of a sparse workload the whole-problem check judges: as many as fit kOracleBudget, at least one.
std::int64_t checked_sequences(const Workload& w) {
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(kOracleBudget / oracle_flops_per_sequence(w)), 1, w.batch);
}

/// Copies the first dst.bytes() of src (the leading sequences of a (B, ...) tensor) into dst.
void copy_prefix(check::HostTensor& dst, const check::HostTensor& src) {
  std::copy_n(src.storage.begin(), std::min(dst.storage.size(), src.storage.size()), dst.storage.begin());
}

/// The sparse workload's check: its first sequences (checked_sequences) judged whole against the fp64 oracle
/// with `flatattn check`'s yardsticks and rule (src/check/yardstick.h), on the host copies of t. The sampled-row
/// checker cannot: a row's keys under a block mask are not one contiguous range.
json check_sparse_whole(const Workload& w, const Tensors& t, Mode mode) {
  const std::int64_t nb = checked_sequences(w);
  const bool bwd = mode != Mode::fwd;
  check::CaseTensors c = check::make_case(sparse_case(w, nb), w.seed, bwd);
  use_mask(c, sparse_lists(w));  // replaces make_case's lists (BigBird adds blocks to them)
  for (auto [dst, src] : {std::pair{&c.q, &t.q}, {&c.k, &t.k}, {&c.v, &t.v}, {&c.out, &t.out}})
    copy_prefix(*dst, *src);
  if (w.sinks) copy_prefix(c.sinks, t.sinks);
  Verdict v;
  std::string what;
  if (!bwd) {
    v = check::judge_forward(c.out, check::forward_yardstick(c), w.dtype);
    v.unwritten = c.out.count_nonfinite();
    what = "out";
  } else {
    for (auto [dst, src] : {std::pair{&c.lse, &t.lse}, {&c.dout, &t.dout}, {&c.dq, &t.dq}, {&c.dk, &t.dk}, {&c.dv, &t.dv}})
      copy_prefix(*dst, *src);
    const check::BackwardOracle ref = check::oracle_backward(c);
    const check::BackwardYardstick y = check::naive_backward(c, ref);
    bool pass = true;
    for (const auto& g : check::judge_backward(c, ref, y)) {  // dq reported; dk, dv must pass too
      if (std::string(g.name) == "dq") v = g.v;
      pass = pass && g.v.pass;
    }
    v.pass = v.pass && pass;
    v.unwritten = c.dq.count_nonfinite() + c.dk.count_nonfinite() + c.dv.count_nonfinite();
    what = "dq (dk, dv: judged)";
  }
  v.pass = v.pass && v.unwritten == 0;
  json j = to_json(v);
  j["what"] = fmt::format("{}, whole sequences 0..{} of {} vs the fp64 oracle (flatattn check's judge)", what, nb - 1,
                          w.batch);
  return j;
}

json report_json(const Report& r) {
  return {{"backend", r.backend}, {"dataflow", std::string(name(r.dataflow))}, {"block_m", r.block_m},
          {"block_n", r.block_n}, {"kernel", r.kernel}};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

/// Times fn() (which enqueues work on the workload's device) in milliseconds.
double time_ms(DeviceKind where, const std::function<void()>& fn) {
  if (where == DeviceKind::cuda) {
    gpu::EventTimer ev;
    ev.start();
    fn();
    return ev.stop_ms();
  }
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

json measure_in_child(const Workload& w, const std::string& method, const MeasureOptions& m) {
  const DeviceKind dev = w.device;
  const bool naive = method == "naive";
  if (naive && m.mode != Mode::fwd)
    throw Error(Error::Kind::unsupported, "method", "naive " + std::string(name(m.mode)),
                "naive attention is measured for the forward only", "use --mode fwd to compare with naive");
  if (naive && dev != DeviceKind::cpu)
    throw Error(Error::Kind::unsupported, "method", "naive on cuda", "naive attention runs on the CPU",
                "use --device cpu to compare with naive");
  Tensors t = make_tensors(w, m.mode);
  if (dev == DeviceKind::cuda) {
    for (Tensor* x : all(t, m.mode)) x->upload();
    if (t.mask)
      for (check::HostTensor* x : check::sparse_tensors(*t.mask)) t.mirrors[x].upload(*x);
  }
  const Options base = w.options();
  Report rep;
  rep.backend = "cpu";
  rep.kernel = "naive";

  // The pass being measured (fwdbwd: frep is its forward's Report, rep the backward's).
  Report frep;
  std::function<void()> pass;
  Options fopt = base;
  if (naive) {
    pass = [&] { engine::naive_forward(fwd_args(t, dev, false), base); };
  } else if (m.mode == Mode::fwd) {
    pass = [&] { rep = forward(fwd_args(t, dev, false), base); };
  } else {
    fopt.return_lse = true;
    if (m.mode == Mode::bwd) {  // the forward that backward needs runs once, untimed
      forward(fwd_args(t, dev, true), fopt);
      pass = [&] { rep = backward(bwd_args(t, dev), base); };
    } else {
      pass = [&] {
        frep = forward(fwd_args(t, dev, true), fopt);
        rep = backward(bwd_args(t, dev), base);
      };
    }
  }

  // Warm-up, then the check of the (poisoned-before) outputs.
  for (int i = 0; i < std::max(1, m.warmup); ++i) pass();
  if (dev == DeviceKind::cuda) {
    gpu::synchronize();
    for (Tensor* x : all(t, m.mode)) x->download();
  }
  json check;
  if (m.check_rows > 0 && w.alibi) {
    check = {{"not_checked", "the sampled-row checker does not model ALiBi (`flatattn check` runs it against the oracle)"}};
  } else if (m.check_rows > 0 && !w.bias.empty()) {
    check = {{"not_checked", "the sampled-row checker does not model the bias (`flatattn check` runs it against the oracle)"}};
  } else if (m.check_rows > 0 && w.dropout > 0.f) {
    check = {{"not_checked", "a sampled row cannot regenerate its dropout mask (`flatattn check` judges dropout on "
                             "whole problems against the oracle)"}};
  } else if (m.check_rows > 0 && w.sparse() && oracle_flops_per_sequence(w) > kOracleLimit) {
    check = {{"not_checked", fmt::format("a sparse run is checked on whole sequences (the sampled-row checker needs "
                                         "contiguous key ranges), and one sequence is {:.3g} GFLOP of fp64 oracle work "
                                         "(limit {:.3g}): check a smaller --n or --hq with the same mask flags",
                                         oracle_flops_per_sequence(w) / 1e9, kOracleLimit / 1e9)}};
  } else if (m.check_rows > 0 && w.sparse()) {
    check = check_sparse_whole(w, t, m.mode);
  } else if (m.check_rows > 0) {
    const std::vector<RowId> rows = sample_rows(fwd_args(t, DeviceKind::cpu, false), base, m.check_rows, w.seed ^ 0x5a);
    Verdict v;
    if (m.mode == Mode::fwd) {
      v = check_forward_rows(fwd_args(t, DeviceKind::cpu, false), base, rows);
      v.unwritten = t.out.count_nonfinite();
    } else {
      v = check_dq_rows(bwd_args(t, DeviceKind::cpu), base, rows);
      v.unwritten = t.dq.count_nonfinite() + t.dk.count_nonfinite() + t.dv.count_nonfinite();
    }
    v.pass = v.pass && v.unwritten == 0;
    check = to_json(v);
    check["what"] = m.mode == Mode::fwd ? "out" : "dq (dk, dv: written)";
  }

  std::vector<double> times;
  for (int i = 0; i < m.reps; ++i) times.push_back(time_ms(dev, pass));
  const double med = median(times);
  json r = {{"method", method},
            {"report", naive ? json{{"backend", "cpu"}, {"dataflow", "naive"}, {"block_m", 0}, {"block_n", 0},
                                    {"kernel", "naive fp32, S and P materialized"}}
                             : report_json(rep)},
            {"threads", dev == DeviceKind::cpu ? (w.threads > 0 ? w.threads : omp_get_max_threads()) : 0},
            {"times_ms", times},
            {"median_ms", med},
            {"min_ms", times.empty() ? 0.0 : *std::min_element(times.begin(), times.end())},
            {"gflops", med > 0 ? w.flops(m.mode) / (med * 1e6) : 0.0},
            {"check", check},
            {"workspace_bytes", nullptr}};
  if (!naive && m.mode == Mode::fwdbwd) r["forward_report"] = report_json(frep);
  if (dev == DeviceKind::cpu) {  // what the engine says it allocates, next to the measured peak
    std::optional<std::size_t> ws;
    if (naive) ws = engine::naive_workspace_bytes(fwd_args(t, dev, false), base);
    else if (m.mode == Mode::fwd) ws = engine::workspace_bytes(fwd_args(t, dev, false), base, rep.dataflow);
    else if (m.mode == Mode::bwd) ws = engine::backward_workspace_bytes(bwd_args(t, dev), base);
    if (ws) r["workspace_bytes"] = *ws;
  }
  if (dev == DeviceKind::cuda) r["device"] = gpu::describe();
  return r;
}

}  // namespace

json measure_method(const Workload& w, const std::string& method, const MeasureOptions& m) {
  json r = run_in_child([&] { return measure_in_child(w, method, m); });
  r["method"] = method;
  return r;
}

double baseline_rss(const Workload& w, Mode mode) {
  const json r = run_in_child([&] {
    Tensors t = make_tensors(w, mode);
    return json::object();
  });
  rethrow_child_error(r);
  return r.at("maxrss_bytes").get<double>();
}

void add_peak(json& r, double baseline, DeviceKind device) {
  if (device == DeviceKind::cpu && r.contains("maxrss_bytes") && !r.contains("error"))
    r["peak_bytes"] = std::max(0.0, r["maxrss_bytes"].get<double>() - baseline);
  else
    r["peak_bytes"] = nullptr;
}

/// Why naive attention is not run for this workload, or "" when it is.
std::string naive_skip_reason(const Workload& w, Mode mode) {
  if (mode != Mode::fwd) return "naive attention is measured for --mode fwd only";
  if (w.device != DeviceKind::cpu) return "naive attention runs on the CPU (--device cpu)";
  if (w.sparse()) return "naive attention is dense (no block lists or global positions)";
  if (!engine::has_naive()) return "this build's CPU engine has no naive attention";
  const int threads = w.threads > 0 ? w.threads : static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  const double need = naive_slice_bytes(w) * threads + w.tensor_bytes(mode);
  const double avail = available_memory_bytes();
  if (avail > 0 && need > 0.8 * avail)
    return fmt::format("it would materialize {} of scores ({} per head slice x {} threads) with {} available",
                       fmt_bytes(naive_slice_bytes(w) * threads), fmt_bytes(naive_slice_bytes(w)), threads,
                       fmt_bytes(avail));
  return "";
}

double naive_slice_bytes(const Workload& w) { return 4.0 * static_cast<double>(w.nq) * static_cast<double>(w.nk); }

double available_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream s(line);
    std::string key;
    double kb = 0;
    s >> key >> kb;
    if (key == "MemAvailable:") return kb * 1024.0;
  }
  return 0.0;
}

}  // namespace flatattn::cli
