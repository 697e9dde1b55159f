// `flatattn check`: the sweep of cli/check_cases.h against the fp64 oracle, one table row per case and
// output, whole tensors compared (the cases are small). Exit 1 when any row fails (or nothing passed).
#include <chrono>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/buffers.h"
#include "cli/check_cases.h"
#include "cli/commands.h"
#include "cli/engine.h"
#include "cli/flags.h"
#include "cli/machine.h"
#include "cli/report.h"
#include "cli/sample_check.h"
#include "cli/table.h"
#include "cli/workload.h"
#include "src/reference/reference.h"

namespace flatattn::cli {

namespace {

using nlohmann::json;

struct CheckFlags {
  std::string device = "auto";
  bool quick = false, json = false;
  std::uint64_t seed = 0;
  std::vector<std::string> dtypes;
};

/// Host tensors of one case: inputs random, outputs poisoned.
struct CaseTensors {
  Tensor q, k, v, out, lse, dout, dq, dk, dv, cu_q, cu_k;
  std::optional<Varlen> varlen(DeviceKind where) const {
    if (!cu_q.data() || cu_q.numel() == 0) return std::nullopt;
    Varlen v;
    v.cu_seqlens_q = cu_q.view(where);
    v.cu_seqlens_k = cu_k.view(where);
    const auto* cq = static_cast<const std::int32_t*>(cu_q.data());
    const auto* ck = static_cast<const std::int32_t*>(cu_k.data());
    for (std::int64_t b = 0; b + 1 < cu_q.numel(); ++b) {
      v.max_seqlen_q = std::max<std::int64_t>(v.max_seqlen_q, cq[b + 1] - cq[b]);
      v.max_seqlen_k = std::max<std::int64_t>(v.max_seqlen_k, ck[b + 1] - ck[b]);
    }
    return v;
  }
};

Tensor rows_tensor(const CheckCase& c, DType dt, std::int64_t n, std::int64_t h) {
  if (c.varlen()) return c.strided ? Tensor::make(dt, {n, h, c.d}, {1, 0, 2}, 8) : Tensor::make(dt, {n, h, c.d});
  return c.strided ? Tensor::make(dt, {c.batch, n, h, c.d}, {0, 2, 1, 3}, 8) : Tensor::make(dt, {c.batch, n, h, c.d});
}

CaseTensors make_case(const CheckCase& c, std::uint64_t seed) {
  CaseTensors t;
  const auto sum = [](const std::vector<std::int32_t>& v) { return std::accumulate(v.begin(), v.end(), std::int64_t{0}); };
  const std::int64_t nq = c.varlen() ? sum(c.seqlens_q) : c.nq, nk = c.varlen() ? sum(c.seqlens_k) : c.nk;
  t.q = rows_tensor(c, c.dtype, nq, c.hq);
  t.k = rows_tensor(c, c.dtype, nk, c.hkv);
  t.v = rows_tensor(c, c.dtype, nk, c.hkv);
  t.out = rows_tensor(c, c.dtype, nq, c.hq);
  t.q.fill_normal(seed ^ 1, c.sd);
  t.k.fill_normal(seed ^ 2, c.sd);
  t.v.fill_normal(seed ^ 3);
  t.out.poison();
  t.lse = c.varlen() ? Tensor::make(DType::f32, {c.hq, nq}) : Tensor::make(DType::f32, {c.batch, c.hq, nq});
  t.lse.poison();
  if (c.varlen()) {
    t.cu_q = Tensor::make(DType::i32, {c.batch + 1});
    t.cu_k = Tensor::make(DType::i32, {c.batch + 1});
    auto* cq = static_cast<std::int32_t*>(t.cu_q.data());
    auto* ck = static_cast<std::int32_t*>(t.cu_k.data());
    cq[0] = ck[0] = 0;
    for (std::int64_t b = 0; b < c.batch; ++b) {
      cq[b + 1] = cq[b] + c.seqlens_q[b];
      ck[b + 1] = ck[b] + c.seqlens_k[b];
    }
  }
  if (c.backward) {
    t.dout = rows_tensor(c, c.dtype, nq, c.hq);
    t.dq = rows_tensor(c, c.dtype, nq, c.hq);
    t.dk = rows_tensor(c, c.dtype, nk, c.hkv);
    t.dv = rows_tensor(c, c.dtype, nk, c.hkv);
    t.dout.fill_normal(seed ^ 4);
    t.dq.poison();
    t.dk.poison();
    t.dv.poison();
  }
  return t;
}

Tensor like(const Tensor& t, DType dt) {
  Tensor r = Tensor::make(dt, t.shape());
  r.poison();
  return r;
}

struct Row {
  std::string what;  // "out", "dq", ...
  Verdict v;
  Verdict lse;  // forward rows only
  bool has_lse = false;
};

/// Runs one case on `where` and judges every output against the oracle. Returns its rows and the
/// Report of the (last) kernel call.
std::vector<Row> run_case(const CheckCase& c, DeviceKind where, std::uint64_t seed, Report& rep) {
  CaseTensors t = make_case(c, seed);
  std::vector<Tensor*> tensors = {&t.q, &t.k, &t.v, &t.out, &t.lse};
  if (c.backward) tensors.insert(tensors.end(), {&t.dout, &t.dq, &t.dk, &t.dv});
  if (c.varlen()) tensors.insert(tensors.end(), {&t.cu_q, &t.cu_k});
  if (where == DeviceKind::cuda)
    for (Tensor* x : tensors) x->upload();
  Options o = c.options;
  o.return_lse = true;
  ForwardArgs fa{t.q.view(where), t.k.view(where), t.v.view(where), t.out.view(where), t.lse.view(where), t.varlen(where)};
  rep = forward(fa, o);
  if (c.backward) {
    BackwardArgs ba{t.dout.view(where), t.q.view(where), t.k.view(where), t.v.view(where), t.out.view(where),
                    t.lse.view(where), t.dq.view(where), t.dk.view(where), t.dv.view(where), t.varlen(where)};
    rep = backward(ba, c.options);
  }
  if (where == DeviceKind::cuda)
    for (Tensor* x : tensors) x->download();

  // The oracle on the host copies: f64 and the input dtype (naive_lowp).
  const std::optional<Varlen> vl = t.varlen(DeviceKind::cpu);
  std::vector<Row> rows;
  if (!c.backward) {
    Tensor ref = like(t.out, DType::f64), ref_lse = like(t.lse, DType::f64), naive = like(t.out, c.dtype);
    ref::forward({t.q.view(), t.k.view(), t.v.view(), ref.view(), ref_lse.view(), vl}, o, ref::Precision::f64);
    Options on = c.options;
    on.return_lse = false;
    ref::forward({t.q.view(), t.k.view(), t.v.view(), naive.view(), {}, vl}, on, ref::Precision::input);
    // fp32: the engine's naive attention (fp32 GEMMs, fp32 accumulation) is a second yardstick; with large
    // logits its fp32 S = QK^T moves P further than the oracle's double-accumulating naive_lowp shows.
    Tensor naive32;
    if (c.dtype == DType::f32 && engine::has_naive()) {
      naive32 = like(t.out, DType::f32);
      engine::naive_forward({t.q.view(), t.k.view(), t.v.view(), naive32.view(), {}, vl}, on);
    }
    Row r{"out", judge_tensors(t.out, ref, naive, naive32.data() ? &naive32 : nullptr), judge_lse(t.lse, ref_lse), true};
    rows.push_back(r);
    return rows;
  }
  Tensor rdq = like(t.dq, DType::f64), rdk = like(t.dk, DType::f64), rdv = like(t.dv, DType::f64);
  Tensor ndq = like(t.dq, c.dtype), ndk = like(t.dk, c.dtype), ndv = like(t.dv, c.dtype);
  Tensor out64 = like(t.out, DType::f64), lse64 = like(t.lse, DType::f64);  // validated, unused by the oracle
  ref::backward({t.dout.view(), t.q.view(), t.k.view(), t.v.view(), out64.view(), lse64.view(), rdq.view(), rdk.view(),
                 rdv.view(), vl},
                c.options, ref::Precision::f64);
  ref::backward({t.dout.view(), t.q.view(), t.k.view(), t.v.view(), out64.view(), lse64.view(), ndq.view(), ndk.view(),
                 ndv.view(), vl},
                c.options, ref::Precision::input);
  rows.push_back({"dq", judge_tensors(t.dq, rdq, ndq), {}, false});
  rows.push_back({"dk", judge_tensors(t.dk, rdk, ndk), {}, false});
  rows.push_back({"dv", judge_tensors(t.dv, rdv, ndv), {}, false});
  return rows;
}

std::string options_str(const Options& o) {
  std::string s;
  if (o.causal) s += o.causal_align == CausalAlign::bottom_right ? "causal " : "causal-tl ";
  if (o.window.left >= 0 || o.window.right >= 0)
    s += fmt::format("win({},{}){} ", o.window.left, o.window.right, o.causal_align == CausalAlign::top_left ? "-tl" : "");
  if (o.softcap > 0) s += fmt::format("cap{} ", o.softcap);
  return s.empty() ? "-" : s.substr(0, s.size() - 1);
}

void check(const CheckFlags& f) {
  const DeviceKind dev = resolve_device(f.device);
  std::vector<DType> dtypes;
  for (const auto& s : f.dtypes) {
    const DType d = parse_dtype(s);
    if (d == DType::f32 && dev == DeviceKind::cuda)
      throw UsageError("--dtype", "f32 with --device cuda", "f16, bf16 on cuda (f32 runs on the cpu)");
    dtypes.push_back(d);
  }
  if (dtypes.empty()) {
    dtypes = dev == DeviceKind::cuda ? std::vector<DType>{DType::bf16, DType::f16}
                                     : std::vector<DType>{DType::f32, DType::bf16, DType::f16};
    if (f.quick) dtypes.resize(1);
  }
  std::uint64_t seed = f.seed;
  if (seed == 0)
    seed = (static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^ std::random_device{}()) | 1;
  const std::vector<CheckCase> cases = check_sweep(dtypes, f.quick);
  const Machine m = this_machine();
  if (!f.json)
    std::printf("flatattn check: %zu cases on %s, seed %llu (replay with --seed %llu)\n%s\n\n", cases.size(),
                std::string(name(dev)).c_str(), static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(seed), kRuleLine);
  Table table({"#", "case", "shape", "dtype", "options", "ran", "output", "max err", "bound", "rel err", "lse err", "result"},
              {true, false, false, false, false, false, false, true, true, true, true, false});
  json jrows = json::array();
  int passed = 0, failed = 0, skipped = 0, idx = 0;
  for (const CheckCase& c : cases) {
    ++idx;
    const std::string fwd_or_bwd = c.backward ? "bwd" : name(c.options.dataflow).data();
    const std::string label = fmt::format("{} [{}]", c.feature, c.backward ? "bwd" : "fwd");
    Report rep;
    std::vector<Row> rows;
    std::string error;
    bool skip = false;
    try {
      rows = run_case(c, dev, seed + static_cast<std::uint64_t>(idx), rep);
    } catch (const Error& e) {
      skip = e.kind() == Error::Kind::unsupported;
      error = e.what();
    }
    const std::string ran = c.backward || rep.block_m == 0
                                ? fwd_or_bwd
                                : fmt::format("{} {}x{}", name(rep.dataflow), rep.block_m, rep.block_n);
    if (!error.empty()) {
      (skip ? skipped : failed) += 1;
      table.add({std::to_string(idx), label, c.shape(), std::string(name(c.dtype)), options_str(c.options),
                 fwd_or_bwd, "-", "-", "-", "-", "-", skip ? "SKIP" : "FAIL"});
      jrows.push_back({{"case", label}, {"shape", c.shape()}, {"dtype", name(c.dtype)}, {"dataflow", fwd_or_bwd},
                       {"result", skip ? "SKIP" : "FAIL"}, {"error", error}});
      if (!f.json) std::fprintf(stderr, "  #%d %s: %s\n", idx, skip ? "skipped" : "error", error.c_str());
      continue;
    }
    for (const Row& r : rows) {
      const bool ok = r.v.pass && (!r.has_lse || r.lse.pass);
      (ok ? passed : failed) += 1;
      table.add({std::to_string(idx), label, c.shape(), std::string(name(c.dtype)), options_str(c.options), ran, r.what,
                 fmt::format("{:.2e}", r.v.max_err), fmt::format("{:.2e}", r.v.bound), fmt::format("{:.2e}", r.v.rel_err),
                 r.has_lse ? fmt::format("{:.1e}", r.lse.max_err) : "-",
                 ok ? "PASS" : (r.v.nonfinite || r.lse.nonfinite ? "FAIL (non-finite)" : "FAIL")});
      json jr = {{"case", label}, {"shape", c.shape()}, {"dtype", name(c.dtype)}, {"options", options_str(c.options)},
                 {"ran", ran}, {"output", r.what}, {"check", r.v.to_json()}, {"result", ok ? "PASS" : "FAIL"}};
      if (r.has_lse) jr["lse"] = r.lse.to_json();
      jrows.push_back(jr);
    }
  }
  if (f.json) {
    std::printf("%s\n", json{{"command", "check"}, {"device", name(dev)}, {"seed", seed}, {"machine", m.to_json()},
                             {"rule", kRuleLine}, {"rows", jrows}, {"passed", passed}, {"failed", failed},
                             {"skipped", skipped}}
                            .dump(2)
                            .c_str());
  } else {
    std::printf("%s\n%d passed, %d failed, %d skipped (unsupported by this build or for the shape)\n", table.str().c_str(), passed,
                failed, skipped);
  }
  if (failed > 0 || passed == 0) throw CommandFailed{1};
}

}  // namespace

void register_check(CLI::App& app) {
  auto f = std::make_shared<CheckFlags>();
  CLI::App* sub = app.add_subcommand(
      "check", "Sweep of shapes, dtypes and features (GQA, windows, softcap, Nq != Nk, odd N, varlen, strides, "
               "backward) against the fp64 oracle; one row per case; exit 1 on any failure.");
  sub->footer(std::string("Each row compares whole outputs (and LSE: |lse - ref| <= 1e-5 max(1, |ref|)) with the oracle.\n") +
              kRuleLine);
  sub->add_option("--device", f->device, "auto = cuda when this build has CUDA and a GPU is present, else cpu")
      ->check(one_of({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  sub->add_option("--dtype", f->dtypes, "dtypes to sweep (comma list) [default: f32,bf16,f16 on cpu; bf16,f16 on cuda]")
      ->delimiter(',')
      ->check(one_of({"f32", "f16", "bf16"}));
  sub->add_flag("--quick", f->quick, "a subset (one dtype) that runs in seconds");
  sub->add_option("--seed", f->seed, "seed of the random inputs; 0 = fresh each run (printed, to replay)");
  sub->add_flag("--json", f->json, "print the rows as JSON instead of a table");
  sub->callback([f] { check(*f); });
}

}  // namespace flatattn::cli
