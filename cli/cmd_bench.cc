// `flatattn bench`: Flash vs FLAT vs naive over N, with the machine's SGEMM rate measured in the same
// run as the ceiling, measured peak memory per method, a table, and CSV/JSON files.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/child.h"
#include "cli/commands.h"
#include "cli/engine.h"
#include "cli/flags.h"
#include "cli/machine.h"
#include "cli/measure.h"
#include "cli/report.h"
#include "cli/sparse_workload.h"
#include "cli/table.h"

namespace flatattn::cli {

namespace {

using nlohmann::json;

struct BenchFlags {
  WorkloadFlags w;
  std::vector<std::int64_t> ns = {512, 1024, 2048, 4096, 8192, 16384};
  std::int64_t tokens = 16384;
  std::vector<std::string> methods = {"flash", "flat", "naive"};
  std::string mode = "fwd";
  int reps = 3, warmup = 1, check_rows = 16, sgemm_n = 2048;
  std::string csv, json;
  bool quiet = false;
};

/// Progress on stderr: one line per measurement ("\r"-overwritten on a terminal).
class Progress {
 public:
  Progress(int total, bool quiet) : total_(total), quiet_(quiet), tty_(::isatty(2) != 0) {}
  void step(const std::string& what) {
    ++done_;
    if (quiet_) return;
    std::fprintf(stderr, tty_ ? "\r\033[K[%d/%d] %s" : "[%d/%d] %s\n", done_, total_, what.c_str());
    std::fflush(stderr);
  }
  void finish() {
    if (!quiet_ && tty_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  int total_, done_ = 0;
  bool quiet_, tty_;
};

/// One GEMM ceiling of the run (engine::Gemm): measured before and after the attention, each in a child process as
/// the attention is, when `on`; the ratios use the higher rate.
struct GemmCeiling {
  engine::Gemm gemm;
  bool on = false;
  std::string library;
  json before = {{"gflops", nullptr}}, after = {{"gflops", nullptr}};

  void measure(json& into, int n, int threads) const {
    if (!on) return;
    into = run_in_child([&] {
      const std::optional<double> g = engine::gemm_gflops(gemm, n, threads);
      return g ? json{{"gflops", *g}} : json{{"gflops", nullptr}};
    });
    rethrow_child_error(into);
  }
  /// The higher of the two rates (0 when neither was measured).
  [[nodiscard]] double best() const {
    double g = 0;
    for (const json* s : {&before, &after})
      if ((*s)["gflops"].is_number()) g = std::max(g, (*s)["gflops"].get<double>());
    return g;
  }
  [[nodiscard]] json to_json(int n, int threads) const {
    const double g = best();
    return {{"library", library}, {"n", n}, {"threads", threads}, {"gflops_before", before["gflops"]},
            {"gflops_after", after["gflops"]}, {"gflops", g > 0 ? json(g) : json(nullptr)}};
  }
};

std::string csv_line(const json& r) {
  const json& rep = r.value("report", json::object());
  const json& c = r.value("check", json::object());
  auto num = [&](const char* k) { return r.contains(k) && r[k].is_number() ? fmt::format("{}", r[k].get<double>()) : ""; };
  std::string status = r.contains("skipped") ? "skipped" : r.contains("error") ? "error" : (c.empty() || c.contains("not_checked")) ? "unchecked" : (c.value("pass", false) ? "PASS" : "FAIL");
  return fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", r["N"].get<std::int64_t>(), r["B"].get<std::int64_t>(),
                     r["label"].get<std::string>(), rep.value("backend", ""), rep.value("dataflow", ""),
                     rep.value("block_m", 0), rep.value("block_n", 0), num("median_ms"), num("min_ms"), num("gflops"),
                     num("sgemm_ratio"), num("bf16_gemm_ratio"), num("peak_bytes"), num("workspace_bytes"), status,
                     c.contains("max_err") ? fmt::format("{}", c["max_err"].get<double>()) : "",
                     c.contains("bound") ? fmt::format("{}", c["bound"].get<double>()) : "");
}

void bench(const BenchFlags& f) {
  const Mode mode = parse_mode(f.mode);
  WorkloadFlags wf = f.w;
  wf.n = f.ns.front();
  const Workload proto = resolve(wf);  // validates the shared flags once
  const Machine m = this_machine();
  const int threads = proto.threads;
  const bool cpu = proto.device == DeviceKind::cpu;

  if (!f.quiet) std::fprintf(stderr, "measuring the SGEMM ceiling (%dx%dx%d f32)...\n", f.sgemm_n, f.sgemm_n, f.sgemm_n);
  GemmCeiling sg{engine::Gemm::f32, cpu, engine::gemm_library(engine::Gemm::f32)};
  sg.measure(sg.before, f.sgemm_n, threads);
  // bf16 products (bf16 inputs, or f32 opted in) are judged against a bf16 GEMM too (issue 21), where oneDNN loads.
  const bool bf16_products = cpu && (proto.dtype == DType::bf16 ||
                                     (proto.dtype == DType::f32 && proto.fp32_matmul == Fp32Matmul::bf16));
  GemmCeiling bg{engine::Gemm::bf16, false, bf16_products ? engine::gemm_library(engine::Gemm::bf16) : ""};
  bg.on = !bg.library.empty();
  if (bg.on && !f.quiet)
    std::fprintf(stderr, "measuring the bf16 GEMM ceiling (%dx%dx%d bf16 -> f32, %s)...\n", f.sgemm_n, f.sgemm_n,
                 f.sgemm_n, bg.library.c_str());
  bg.measure(bg.before, f.sgemm_n, threads);

  const int total = static_cast<int>(f.ns.size() * (f.methods.size() + (cpu ? 1 : 0)));
  Progress progress(total, f.quiet);
  json results = json::array();
  for (std::int64_t n : f.ns) {
    WorkloadFlags nf = wf;
    nf.n = n;
    nf.nk = 0;
    nf.batch = f.w.batch > 0 ? f.w.batch : std::max<std::int64_t>(1, f.tokens / n);
    Workload w = proto;
    w.nq = w.nk = n;
    w.batch = nf.batch;
    check_sparse(w);  // --global against this N
    MeasureOptions mo;
    mo.mode = mode;
    mo.reps = f.reps;
    mo.warmup = f.warmup;
    mo.check_rows = f.check_rows;
    const double avail = available_memory_bytes();
    if (avail > 0 && w.tensor_bytes(mode) > 0.8 * avail)
      throw UsageError("--n", fmt::format("N = {} with B = {} needs {} of tensors with {} available", n, w.batch,
                                          fmt_bytes(w.tensor_bytes(mode)), fmt_bytes(avail)),
                       "smaller --n values, --tokens or --batch");
    double base = 0;
    if (cpu) {
      base = baseline_rss(w, mode);
      progress.step(fmt::format("N={} B={} baseline", n, w.batch));
    }
    for (const std::string& method : f.methods) {
      json r;
      if (method == "naive") {
        const std::string skip = naive_skip_reason(w, mode);
        r = skip.empty() ? measure_method(w, "naive", mo) : json{{"method", "naive"}, {"skipped", skip}};
      } else {
        Workload wm = w;
        wm.dataflow = parse_dataflow(method);
        r = measure_method(wm, "fused", mo);
      }
      add_peak(r, base, w.device);
      r["label"] = method;
      r["N"] = n;
      r["B"] = w.batch;
      r["flops"] = w.flops(mode);
      if (w.sparse()) r["sparse"] = sparse_json(w, sparse_stats(w));
      progress.step(fmt::format("N={} B={} {}: {}", n, w.batch, method,
                                r.contains("median_ms") ? fmt_ms(r["median_ms"].get<double>()) + " ms"
                                                        : (r.contains("skipped") ? "skipped" : "error")));
      results.push_back(r);
    }
  }
  progress.finish();
  sg.measure(sg.after, f.sgemm_n, threads);
  bg.measure(bg.after, f.sgemm_n, threads);
  const double sgemm = sg.best(), bf16_gemm = bg.best();
  for (json& r : results) {
    if (sgemm > 0 && r.contains("gflops")) r["sgemm_ratio"] = r["gflops"].get<double>() / sgemm;
    if (bf16_gemm > 0 && r.contains("gflops")) r["bf16_gemm_ratio"] = r["gflops"].get<double>() / bf16_gemm;
  }
  std::vector<Ceiling> ceilings;
  if (sgemm > 0) ceilings.push_back({"/SGEMM", sgemm});
  if (bf16_gemm > 0) ceilings.push_back({"/BF16 GEMM", bf16_gemm});

  // Flash vs FLAT per N.
  json summary = json::array();
  for (std::int64_t n : f.ns) {
    const json* fl = nullptr;
    const json* ft = nullptr;
    const json* nv = nullptr;
    for (const json& r : results)
      if (r["N"] == n && r.contains("median_ms"))
        (r["label"] == "flash" ? fl : r["label"] == "flat" ? ft : nv) = &r;
    json s = {{"N", n}};
    if (fl && ft) {
      const double a = (*fl)["median_ms"].get<double>(), b = (*ft)["median_ms"].get<double>();
      s["winner"] = a <= b ? "flash" : "flat";
      s["flat_over_flash_time"] = b / a;
    }
    if (nv)
      for (const json* x : {fl, ft})
        if (x) s[(*x)["label"].get<std::string>() + "_speedup_vs_naive"] = (*nv)["median_ms"].get<double>() / (*x)["median_ms"].get<double>();
    summary.push_back(s);
  }

  // Text report.
  std::printf("flatattn bench: %s, N in {%s}, B = %s, %s\n", proto.features_str().c_str(),
              fmt::format("{}", fmt::join(f.ns, ", ")).c_str(),
              f.w.batch > 0 ? std::to_string(f.w.batch).c_str() : fmt::format("{}/N (--tokens)", f.tokens).c_str(),
              std::string(name(mode)).c_str());
  std::printf("machine: %s\n", m.str().c_str());
  if (sgemm > 0)
    std::printf("SGEMM ceiling (%s, %d^3, %s threads): %.1f GFLOP/s before, %.1f after; ratios use the higher\n\n",
                sg.library.c_str(), f.sgemm_n, threads > 0 ? std::to_string(threads).c_str() : "all",
                sg.before["gflops"].get<double>(), sg.after["gflops"].get<double>());
  else
    std::printf("SGEMM ceiling: not available in this build\n\n");
  if (bf16_gemm > 0)
    std::printf("bf16 GEMM ceiling (%s, bf16 in, f32 out, %d^3): %.1f GFLOP/s before, %.1f after; ratios use the "
                "higher\n\n",
                bg.library.c_str(), f.sgemm_n, bg.before["gflops"].get<double>(), bg.after["gflops"].get<double>());
  else if (bf16_products)
    std::printf("bf16 GEMM ceiling: not measured (no oneDNN loads: install libdnnl2 or set FLATATTN_ONEDNN_LIB)\n\n");
  std::vector<std::string> h = result_header(ceilings);
  h.insert(h.begin(), {"N", "B"});
  std::vector<bool> right(h.size(), false);
  for (std::size_t i = 0; i < h.size(); ++i)
    right[i] = h[i] == "N" || h[i] == "B" || h[i] == "time ms" || h[i] == "GFLOP/s" || h[i].front() == '/' ||
               h[i] == "peak mem" || h[i] == "workspace";
  Table t(h, right);
  bool ok = true;
  for (const json& r : results) {
    std::vector<std::string> row = result_row(r, ceilings);
    row.insert(row.begin(), {std::to_string(r["N"].get<std::int64_t>()), std::to_string(r["B"].get<std::int64_t>())});
    t.add(row);
    ok = ok && result_ok(r);
  }
  std::printf("%s\n", t.str().c_str());
  if (proto.sparse()) {  // the mask, then its visited blocks at each N (their pairs are the FLOPs counted)
    std::int64_t last_n = 0;
    for (const json& r : results) {
      if (!r.contains("sparse") || r["N"].get<std::int64_t>() == last_n) continue;
      const json& sp = r["sparse"];
      if (last_n == 0)
        std::printf("sparse mask: %s, from seed %llu; %s\n", sp["mask"].get<std::string>().c_str(),
                    static_cast<unsigned long long>(proto.seed), sp["flops_counted"].get<std::string>().c_str());
      last_n = r["N"].get<std::int64_t>();
      std::printf("N = %-6lld visited blocks %lld of %lld (visited fraction %.4f)\n", static_cast<long long>(last_n),
                  static_cast<long long>(sp["blocks_visited"].get<std::int64_t>()),
                  static_cast<long long>(sp["blocks_total"].get<std::int64_t>()), sp["visited_fraction"].get<double>());
    }
  }
  for (const json& s : summary)
    if (s.contains("winner"))
      std::printf("N = %-6lld %s wins (FLAT time / Flash time = %.2f)\n", static_cast<long long>(s["N"].get<std::int64_t>()),
                  s["winner"].get<std::string>().c_str(), s["flat_over_flash_time"].get<double>());
  for (const json& r : results)
    if (!result_ok(r) || r.contains("skipped") || r.contains("error"))
      std::printf("N = %lld %s: %s\n", static_cast<long long>(r["N"].get<std::int64_t>()),
                  r["label"].get<std::string>().c_str(), check_line(r).c_str());
  std::printf("time: median of %d runs after %d warm-up; peak mem: measured peak resident memory above inputs and "
              "outputs; checks: %s vs the fp64 oracle\n",
              f.reps, f.warmup,
              proto.sparse() ? "whole leading sequences (sparse mask)" : fmt::format("{} sampled rows", f.check_rows).c_str());

  json doc = {{"command", "bench"},   {"machine", m.to_json()},
              {"workload", proto.to_json()}, {"mode", name(mode)},
              {"n", f.ns},            {"tokens", f.tokens},
              {"sgemm", sg.to_json(f.sgemm_n, threads)}, {"bf16_gemm", bg.to_json(f.sgemm_n, threads)},
              {"reps", f.reps},       {"warmup", f.warmup},
              {"check_rows", f.check_rows}, {"rule", kRuleLine},
              {"results", results},   {"summary", summary}};
  doc["workload"].erase("Nq");
  doc["workload"].erase("Nk");
  doc["workload"].erase("B");
  if (!f.json.empty()) {
    std::ofstream(f.json) << doc.dump(2) << "\n";
    std::printf("wrote %s\n", f.json.c_str());
  }
  if (!f.csv.empty()) {
    std::ofstream o(f.csv);
    o << "N,B,method,backend,dataflow,block_m,block_n,median_ms,min_ms,gflops,sgemm_ratio,bf16_gemm_ratio,peak_bytes,"
         "workspace_bytes,"
         "check,max_err,bound\n";
    for (const json& r : results) o << csv_line(r);
    std::printf("wrote %s\n", f.csv.c_str());
  }
  if (!ok) throw CommandFailed{1};
}

}  // namespace

void register_bench(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* sub = app.add_subcommand(
      "bench", "Flash vs FLAT vs naive attention over N: time, GFLOP/s, ratio to this machine's SGEMM rate (and, for "
               "bf16 products on the CPU, its bf16 GEMM rate by oneDNN where it loads; both measured in the same run), "
               "measured peak memory; table plus --csv/--json files.");
  sub->footer("Each N runs B = tokens/N sequences (B * N = 16k tokens by default, as in the FlashAttention papers) "
              "unless --batch is given.\nEvery measurement runs in its own process; its outputs are checked on "
              "sampled rows against the fp64 oracle (exit 1 on a failure).");
  sub->add_option("-n,--n", f->ns, "sequence lengths (Nq = Nk), comma list")
      ->delimiter(',')
      ->check(int_at_least(1))
      ->capture_default_str();
  sub->add_option("--tokens", f->tokens, "B = max(1, tokens / N) when --batch is not given")
      ->check(int_at_least(1))
      ->capture_default_str();
  add_workload_flags(*sub, f->w, /*with_n=*/false, /*with_dataflow=*/false);
  sub->add_option("--methods", f->methods, "methods to compare (comma list): flash, flat, naive")
      ->delimiter(',')
      ->check(one_of({"flash", "flat", "naive"}))
      ->capture_default_str();
  sub->add_option("--mode", f->mode, "what to time: fwd, bwd (given the forward's out and LSE), fwdbwd")
      ->check(one_of({"fwd", "bwd", "fwdbwd"}))
      ->capture_default_str();
  sub->add_option("--reps", f->reps, "timed runs per point (median reported)")->check(int_in(1, 10000))->capture_default_str();
  sub->add_option("--warmup", f->warmup, "untimed runs per point (the first is checked)")
      ->check(int_in(1, 1000))
      ->capture_default_str();
  sub->add_option("--check-rows", f->check_rows, "sampled output rows checked against the oracle (0: none; --density/--global: > 0 checks whole leading sequences)")
      ->check(int_in(0, 1000000))
      ->capture_default_str();
  sub->add_option("--sgemm-n", f->sgemm_n, "size of the GEMMs (SGEMM, bf16 GEMM) that measure the ceilings")
      ->check(int_in(64, 16384))
      ->capture_default_str();
  sub->add_option("--csv", f->csv, "write the results as CSV to this file");
  sub->add_option("--json", f->json, "write the results as JSON to this file");
  sub->add_flag("-q,--quiet", f->quiet, "no progress lines on stderr");
  sub->callback([f] { bench(*f); });
}

}  // namespace flatattn::cli
