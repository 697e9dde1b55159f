// `flatattn run`: the main job. One workload on the best backend present, checked against the oracle,
// with time, GFLOP/s and peak memory, next to naive materialized attention on the same inputs.
#include <algorithm>
#include <cstdio>
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
#include "cli/run_decode.h"
#include "cli/sparse_workload.h"
#include "cli/table.h"
#include "src/cpu/amx/amx.h"

namespace flatattn::cli {

namespace {

using nlohmann::json;

// Default batch B = 32: about one second of single-core work.
//   GPT-2 small attention (N = 1024, Hq = 12, D = 64, causal) is 4 * Hq * D * N(N+1)/2 = 1.61 GFLOP per
//   sequence. Our goal for the fused CPU forward is half the core's SGEMM rate (issue 2). Measured with
//   OpenBLAS 2048^3 on one core: 140 GFLOP/s on the reference Sapphire Rapids core (AVX-512); a laptop
//   core with AVX2 FMA is ~100 GFLOP/s. At half of that, 50 GFLOP/s, B = 32 is 32 * 1.61 = 51.6 GFLOP,
//   about 1 s. Measured with the CPU engine on one reference core (f32, 2026-11-21): 67 GFLOP/s (flat,
//   0.77 s) and 87 GFLOP/s (flash, 0.59 s) for B = 32.
constexpr std::int64_t kDefaultBatch = 32;

const char* const kFooter =
    "Default workload: GPT-2 small attention, N = 1024, Hq = 12, D = 64, causal, B = 32 (f32 on cpu, bf16 on cuda):\n"
    "a forward is 4*Hq*D*N(N+1)/2 = 1.61 GFLOP per sequence, so B = 32 is 51.6 GFLOP, about one second on one\n"
    "laptop core at 50 GFLOP/s (half of the ~100 GFLOP/s SGEMM rate of an AVX2 core). All cores are used unless\n"
    "--threads is given.\n"
    "Every result is checked on sampled rows against the fp64 oracle; exit 1 when a check fails, 2 on bad flags.";

struct RunFlags {
  WorkloadFlags w;
  std::string mode = "fwd";
  int reps = 3, warmup = 1, check_rows = 64;
  bool no_naive = false, json = false;
  bool decode = false;  ///< --decode: one forward_kvcache decode step (cli/run_decode.h)
  DecodeFlags dec;
};

// Default decode shape (--decode without shape flags): a Llama-3-8B-like layer, GQA Hq = 32 over Hkv = 8,
// D = 128, 8 sequences of 4096 tokens in 16-token pages, one query token each: 2 * 8 * 4096 * 8 * 128 * 2 B
// = 134 MB of bf16 KV per step (268 MB in f32 on the CPU).
constexpr std::int64_t kDecodeBatch = 8, kDecodeContext = 4096, kDecodeHq = 32, kDecodeHkv = 8, kDecodeD = 128;

void run_decode_cmd(const RunFlags& f, const CLI::App& sub) {
  WorkloadFlags wf = f.w;
  auto given = [&](const char* name) { return sub.get_option(name)->count() > 0; };
  if (wf.batch == 0) wf.batch = kDecodeBatch;
  if (!given("--n")) wf.n = kDecodeContext;
  if (!given("--hq")) wf.hq = kDecodeHq;
  if (!given("--hkv")) wf.hkv = given("--hq") ? 0 : kDecodeHkv;
  if (!given("--d")) wf.d = kDecodeD;
  Workload w = resolve(wf);
  if (w.sparse())
    throw UsageError(w.density > 0 ? "--density" : "--global", "with --decode",
                     "no sparse mask in the decode step (forward_kvcache): drop --decode or the sparse flags");
  w.nk = wf.nk > 0 ? wf.nk : wf.n;  // the context
  DecodeFlags d = f.dec;
  d.reps = f.reps;
  d.warmup = f.warmup;
  d.check = f.check_rows > 0;
  d.json = f.json;
  run_decode(w, d);
}

void run(const RunFlags& f) {
  WorkloadFlags wf = f.w;
  if (wf.batch == 0) wf.batch = kDefaultBatch;
  const Workload w = resolve(wf);
  const Mode mode = parse_mode(f.mode);
  const double avail = available_memory_bytes();
  if (avail > 0 && w.tensor_bytes(mode) > 0.8 * avail)
    throw UsageError("--batch", fmt::format("the tensors of {} need {} with {} available", w.str(),
                                            fmt_bytes(w.tensor_bytes(mode)), fmt_bytes(avail)),
                     "a smaller --batch, --n, --hq or --d");
  const Machine m = this_machine();
  const double flops = w.flops(mode);
  if (!f.json) {
    std::printf("flatattn run: %s, %s (%.3g GFLOP per pass)\n", w.str().c_str(), std::string(name(mode)).c_str(),
                flops / 1e9);
    std::printf("machine: %s\n", m.str().c_str());
    std::printf("inputs: N(0,1) from seed %llu (replay with --seed %llu)\n", static_cast<unsigned long long>(w.seed),
                static_cast<unsigned long long>(w.seed));
    if (w.sparse()) std::printf("%s", sparse_report(w, sparse_stats(w)).c_str());
    std::printf("\n");
    std::fflush(stdout);
  }
  MeasureOptions mo;
  mo.mode = mode;
  mo.reps = f.reps;
  mo.warmup = f.warmup;
  mo.check_rows = f.check_rows;
  const double base = w.device == DeviceKind::cpu ? baseline_rss(w, mode) : 0.0;
  json fused = measure_method(w, "fused", mo);
  rethrow_child_error(fused);  // the main job must run: its errors are the user's (exit 2) or ours (exit 1)
  add_peak(fused, base, w.device);
  json naive;
  const std::string skip = f.no_naive ? "--no-naive" : naive_skip_reason(w, mode);
  if (skip.empty()) {
    naive = measure_method(w, "naive", mo);
    add_peak(naive, base, w.device);
  } else {
    naive = {{"method", "naive"}, {"skipped", skip}};
  }

  if (f.json) {
    json out = {{"command", "run"}, {"workload", w.to_json()}, {"mode", name(mode)},     {"flops", flops},
                {"machine", m.to_json()}, {"results", {fused, naive}}, {"rule", kRuleLine}};
    if (w.sparse()) out["sparse"] = sparse_json(w, sparse_stats(w));
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    Table t(result_header({}), {false, false, false, false, true, true, true, true, false});
    t.add(result_row(fused, {}));
    t.add(result_row(naive, {}));
    std::printf("%s", t.str().c_str());
    if (fused.contains("report") && fused["report"].contains("kernel"))  // e.g. the CPU's _amx path
      std::printf("fused kernel: %s%s\n", fused["report"]["kernel"].get<std::string>().c_str(),
                  fused.contains("forward_report")  // fwdbwd: the backward's, then the forward's
                      ? (" (backward); " + fused["forward_report"]["kernel"].get<std::string>() + " (forward)").c_str()
                      : "");
    if (w.device == DeviceKind::cpu)  // which bf16 product paths this binary and machine offer (src/cpu/amx/amx.h)
      std::printf("cpu bf16 products (bf16 forward and backward; f16 forward and backward as 2 bf16 pieces, kernel suffix _split2): amx %s, avx512bf16 %s (FLATATTN_CPU_MATMUL=auto|amx|avx512bf16|fp32)\n",
                  cpu::amx_available() ? "available" : "unavailable",
                  !cpu::avx512bf16_built()      ? "not built (the compiler refused -mavx512bf16)"
                  : cpu::avx512bf16_outruns_fp32() ? "available (auto takes it for bf16 on this CPU)"
                  : cpu::avx512bf16_available()    ? "available (forced only: not listed as faster than fp32 here)"
                                                   : "unavailable on this CPU");
    std::printf("\ntime: median of %d runs after %d warm-up; peak mem: measured peak resident memory above the inputs "
                "and outputs (ru_maxrss of the run's process minus a process that only allocates them)\n",
                f.reps, f.warmup);
    std::printf("check vs the fp64 oracle (%s)\n", kRuleLine);
    std::printf("  fused: %s\n  naive: %s\n", check_line(fused).c_str(), check_line(naive).c_str());
    if (!naive.contains("skipped") && !naive.contains("error")) {
      const double speed = naive["median_ms"].get<double>() / fused["median_ms"].get<double>();
      std::string mem;
      if (fused["peak_bytes"].is_number() && naive["peak_bytes"].is_number())
        mem = fmt::format("; peak memory {} vs {}", fmt_bytes(fused["peak_bytes"].get<double>()),
                          fmt_bytes(naive["peak_bytes"].get<double>()));
      std::printf("fused vs naive: %.2fx the speed%s\n", speed, mem.c_str());
    }
  }
  if (!result_ok(fused) || !result_ok(naive)) throw CommandFailed{1};
}

}  // namespace

void register_run(CLI::App& app) {
  auto f = std::make_shared<RunFlags>();
  CLI::App* sub = app.add_subcommand(
      "run", "The main job: one attention workload (default: GPT-2 small) on the best backend present, checked "
             "against the oracle, with time, GFLOP/s and peak memory, next to naive materialized attention.");
  sub->footer(kFooter);
  add_workload_flags(*sub, f->w);
  sub->add_option("--mode", f->mode, "what to time: fwd, bwd (given the forward's out and LSE), fwdbwd")
      ->check(one_of({"fwd", "bwd", "fwdbwd"}))
      ->capture_default_str();
  sub->add_option("--reps", f->reps, "timed runs (the median is reported)")->check(int_in(1, 10000))->capture_default_str();
  sub->add_option("--warmup", f->warmup, "untimed runs before timing (the first is checked)")
      ->check(int_in(1, 1000))
      ->capture_default_str();
  sub->add_option("--check-rows", f->check_rows, "output rows checked against the fp64 oracle (0: no check; --density/--global: > 0 checks whole leading sequences, as flatattn check does)")
      ->check(int_in(0, 1000000))
      ->capture_default_str();
  sub->add_flag("--no-naive", f->no_naive, "skip naive attention");
  sub->add_flag("--json", f->json, "print the results as JSON instead of text");
  sub->add_flag("--decode", f->decode,
                "a decode step instead: forward_kvcache of --nq query tokens per sequence against a paged KV cache "
                "of --n tokens (default B=8, n=4096, Hq=32, Hkv=8, D=128), printing time and KV bandwidth");
  sub->add_option("--page-size", f->dec.page_size, "--decode: tokens per KV page")->check(int_in(1, 1 << 20))
      ->capture_default_str();
  sub->add_option("--nq", f->dec.nq, "--decode: query tokens per sequence")->check(int_in(1, 1 << 16))
      ->capture_default_str();
  sub->add_option("--splits", f->dec.num_splits, "--decode: split-KV count (0: the library's choice)")
      ->check(int_in(0, 1 << 16))
      ->capture_default_str();
  sub->callback([f, sub] {
    if (f->decode) {
      run_decode_cmd(*f, *sub);
    } else {
      run(*f);
    }
  });
}

}  // namespace flatattn::cli
