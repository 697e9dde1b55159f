// `flatattn check`: the sweep of cli/check_cases.h against the fp64 oracle, one table row per case and
// output, whole tensors compared (the cases are small). Exit 1 when any row fails (or nothing passed).
#include <chrono>
#include <cstdio>
#include <memory>
#include <map>
#include <optional>
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
#include "src/check/case.h"
#include "src/check/oracle.h"
#include "src/check/rule.h"
#include "src/check/yardstick.h"

namespace flatattn::cli {

namespace {

using nlohmann::json;

struct CheckFlags {
  std::string device = "auto";
  bool quick = false, json = false;
  std::uint64_t seed = 0;
  std::vector<std::string> dtypes;
};

struct Row {
  std::string what;  // "out", "dq", ...
  Verdict v;
  Verdict lse;  // forward rows only
  bool has_lse = false;
};

/// Runs one case on `where` and judges every output against the oracle with the checks' yardsticks and
/// rule (src/check, as the tests do). Returns its rows and the Report of the (last) kernel call.
std::vector<Row> run_case(const CheckCase& cc, DeviceKind where, std::uint64_t seed, Report& rep) {
  check::CaseTensors t = check::make_case(cc.c, seed, cc.backward);
  const check::Case& c = t.c;
  std::vector<check::HostTensor*> tensors = {&t.q, &t.k, &t.v, &t.out, &t.lse};
  if (cc.backward) tensors.insert(tensors.end(), {&t.dout, &t.dq, &t.dk, &t.dv});
  if (c.varlen) tensors.insert(tensors.end(), {&t.cu_q, &t.cu_k});
  std::map<const check::HostTensor*, DeviceMirror> mirror;
  if (where == DeviceKind::cuda)
    for (check::HostTensor* x : tensors) mirror[x].upload(*x);
  const auto on = [&](const check::HostTensor& x) { return where == DeviceKind::cuda ? mirror.at(&x).view(x) : x.view(); };
  std::optional<Varlen> vl = t.varlen();
  if (vl) vl->cu_seqlens_q = on(t.cu_q), vl->cu_seqlens_k = on(t.cu_k);
  Options o = c.options;
  o.return_lse = true;
  rep = forward({on(t.q), on(t.k), on(t.v), on(t.out), on(t.lse), vl}, o);
  if (cc.backward)
    rep = backward({on(t.dout), on(t.q), on(t.k), on(t.v), on(t.out), on(t.lse), on(t.dq), on(t.dk), on(t.dv), vl},
                   c.options);
  if (where == DeviceKind::cuda)
    for (check::HostTensor* x : tensors) mirror.at(x).download(*x);

  // The oracle on the host copies.
  std::vector<Row> rows;
  if (!cc.backward) {
    const check::ForwardOracle ref = check::forward_yardstick(t);
    rows.push_back({"out", check::judge(t.out, ref.out, &ref.naive_out, c.dtype), check::judge_lse(t.lse, ref.lse), true});
    return rows;
  }
  const check::BackwardOracle ref = check::oracle_backward(t);
  for (const auto& g : check::judge_backward(t, ref, check::naive_backward(t, ref))) rows.push_back({g.name, g.v, {}, false});
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
  for (const CheckCase& cc : cases) {
    const check::Case& c = cc.c;
    ++idx;
    const std::string fwd_or_bwd = cc.backward ? "bwd" : name(c.options.dataflow).data();
    const std::string label = fmt::format("{} [{}]", cc.feature, cc.backward ? "bwd" : "fwd");
    Report rep;
    std::vector<Row> rows;
    std::string error;
    bool skip = false;
    try {
      rows = run_case(cc, dev, seed + static_cast<std::uint64_t>(idx), rep);
    } catch (const Error& e) {
      skip = e.kind() == Error::Kind::unsupported;
      error = e.what();
    }
    const std::string ran = cc.backward || rep.block_m == 0
                                ? fwd_or_bwd
                                : fmt::format("{} {}x{}", name(rep.dataflow), rep.block_m, rep.block_n);
    if (!error.empty()) {
      (skip ? skipped : failed) += 1;
      table.add({std::to_string(idx), label, shape_str(c), std::string(name(c.dtype)), options_str(c.options),
                 fwd_or_bwd, "-", "-", "-", "-", "-", skip ? "SKIP" : "FAIL"});
      jrows.push_back({{"case", label}, {"shape", shape_str(c)}, {"dtype", name(c.dtype)}, {"dataflow", fwd_or_bwd},
                       {"result", skip ? "SKIP" : "FAIL"}, {"error", error}});
      if (!f.json) std::fprintf(stderr, "  #%d %s: %s\n", idx, skip ? "skipped" : "error", error.c_str());
      continue;
    }
    for (const Row& r : rows) {
      const bool ok = r.v.pass && (!r.has_lse || r.lse.pass);
      (ok ? passed : failed) += 1;
      table.add({std::to_string(idx), label, shape_str(c), std::string(name(c.dtype)), options_str(c.options), ran, r.what,
                 fmt::format("{:.2e}", r.v.max_err), fmt::format("{:.2e}", r.v.bound), fmt::format("{:.2e}", r.v.rel_err),
                 r.has_lse ? fmt::format("{:.1e}", r.lse.max_err) : "-",
                 ok ? "PASS" : (r.v.nonfinite || r.lse.nonfinite ? "FAIL (non-finite)" : "FAIL")});
      json jr = {{"case", label}, {"shape", shape_str(c)}, {"dtype", name(c.dtype)}, {"options", options_str(c.options)},
                 {"ran", ran}, {"output", r.what}, {"check", to_json(r.v)}, {"result", ok ? "PASS" : "FAIL"}};
      if (r.has_lse) jr["lse"] = to_json(r.lse);
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
