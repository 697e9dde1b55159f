// `flatattn check`: the sweep of cli/check_cases.h against the fp64 oracle, one table row per case and
// output, whole tensors compared (the cases are small). Exit 1 when any row fails (or nothing passed).
// With --fuzz N: a differential fuzz instead -- N random cases (check::fuzz_case: shapes, dtypes, features,
// forward with a forced or automatic dataflow, or forward + backward), each a function of (seed, index) alone
// so that one failing case replays by itself, optionally time-boxed (--seconds); only non-passing rows are
// listed.
// With the workload flags (the shape and band of `run`, and --density, --block, --global: cli/sparse_workload.h):
// one workload of the user's own instead of the sweep -- its forward with each dataflow and its backward per
// dtype, whole tensors against the oracle, with the mask `flatattn run` of the same flags and --seed uses. The
// sweep's rows and verdicts are unchanged; the flags only pick what is swept, as --quick and --dtype do.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include <omp.h>

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
#include "cli/sparse_workload.h"
#include "cli/table.h"
#include "cli/workload.h"
#include "src/check/case.h"
#include "src/check/sparse_case.h"
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
  std::int64_t fuzz = 0;        ///< > 0: that many random cases instead of the sweep
  std::int64_t fuzz_first = 1;  ///< index of the first fuzz case (replay one case: --fuzz 1 --fuzz-first I)
  double seconds = 0;           ///< > 0: stop drawing fuzz cases after this long
  int jobs = 1;                 ///< host threads running cases at once (the oracle is the host's work)
  /// A workload of the user's own (shape, band, sparse flags); used when `own` (any of them given).
  WorkloadFlags w;
  bool own = false;
};

/// Defaults of the workload flags for `check`: small enough that the fp64 oracle judges every case of it in
/// about a second on 2 cores (4 x 2 sequences x Hq 4 x 256^2 pairs x D 64 = 1.3e8 flops per pass).
constexpr std::int64_t kCheckN = 256, kCheckHq = 4, kCheckBatch = 2;

struct Row {
  std::string what;  // "out", "dq", ...
  Verdict v;
  Verdict lse;  // forward rows only
  bool has_lse = false;
};

/// Runs one case on `where` and judges every output against the oracle with the checks' yardsticks and
/// rule (src/check, as the tests do). Returns its rows and the Report of the (last) kernel call; `listed` gets
/// the blocks in the kv lists the call was given (partial + full, summed over the lists' rows; -1: none given).
std::vector<Row> run_case(const CheckCase& cc, DeviceKind where, std::uint64_t seed, Report& rep, std::int64_t& listed) {
  check::Case c0 = cc.c;
  // The CUDA sparse backward walks transposed q lists (issue 16): pass the caller's (no random draws), so the
  // given-lists path stays checked here; the device transpose of absent ones is CudaSparseDerive's (test_cuda).
  // A user's workload brings its own lists (cc.mask, replacing make_case's): the library transposes them.
  if (where == DeviceKind::cuda && cc.backward && c0.sparse.on() && !c0.sparse.derive && !cc.mask)
    c0.sparse.give_q = true;
  check::CaseTensors t = check::make_case(c0, seed, cc.backward);
  if (cc.mask) use_mask(t, *cc.mask);
  listed = -1;
  if (t.c.sparse.on() && !t.c.sparse.derive) {
    listed = 0;
    for (const check::HostTensor* n : {&t.kv_num, &t.fkv_num}) {
      const auto* p = reinterpret_cast<const std::int32_t*>(n->storage.data());
      for (std::size_t x = 0; x < n->storage.size() / sizeof(std::int32_t); ++x) listed += p[x];
    }
  }
  const check::Case& c = t.c;
  std::vector<check::HostTensor*> tensors = {&t.q, &t.k, &t.v, &t.out, &t.lse};
  if (cc.backward) tensors.insert(tensors.end(), {&t.dout, &t.dq, &t.dk, &t.dv});
  if (c.varlen) tensors.insert(tensors.end(), {&t.cu_q, &t.cu_k});
  if (c.alibi) tensors.push_back(&t.alibi);
  if (c.sinks) tensors.push_back(&t.sinks);
  if (c.sinks && cc.backward) tensors.push_back(&t.dsinks);
  if (c.has_bias()) tensors.push_back(&t.bias);
  if (c.has_bias() && cc.backward) tensors.push_back(&t.dbias);
  for (check::HostTensor* x : check::sparse_tensors(t)) tensors.push_back(x);  // block-sparse lists, bits, globals
  std::map<const check::HostTensor*, DeviceMirror> mirror;
  if (where == DeviceKind::cuda)
    for (check::HostTensor* x : tensors) mirror[x].upload(*x);
  const auto on = [&](const check::HostTensor& x) { return where == DeviceKind::cuda ? mirror.at(&x).view(x) : x.view(); };
  std::optional<Varlen> vl = t.varlen();
  if (vl) vl->cu_seqlens_q = on(t.cu_q), vl->cu_seqlens_k = on(t.cu_k);
  Options o = c.options;
  o.return_lse = true;
  ForwardArgs fa;
  fa.q = on(t.q), fa.k = on(t.k), fa.v = on(t.v), fa.out = on(t.out), fa.lse = on(t.lse), fa.varlen = vl;
  if (c.alibi) fa.alibi_slopes = on(t.alibi);
  if (c.sinks) fa.sinks = on(t.sinks);
  if (c.has_bias()) fa.bias = on(t.bias);
  fa.block_sparse = check::sparse_args(t, on);
  fa.local_global = check::local_global_args(t, on);
  rep = forward(fa, o);
  if (cc.backward) {
    BackwardArgs ba;
    ba.dout = on(t.dout), ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.lse = fa.lse;
    ba.dq = on(t.dq), ba.dk = on(t.dk), ba.dv = on(t.dv), ba.varlen = vl;
    ba.alibi_slopes = fa.alibi_slopes;
    ba.sinks = fa.sinks;
    ba.block_sparse = fa.block_sparse;
    ba.local_global = fa.local_global;
    if (c.sinks) ba.dsinks = on(t.dsinks);
    ba.bias = fa.bias;
    if (c.has_bias()) ba.dbias = on(t.dbias);
    rep = backward(ba, c.options);
  }
  if (where == DeviceKind::cuda)
    for (check::HostTensor* x : tensors) mirror.at(x).download(*x);

  // The oracle on the host copies.
  std::vector<Row> rows;
  if (!cc.backward) {
    const check::ForwardOracle ref = check::forward_yardstick(t);
    const double lse_tol =
        check::lse_tolerance(c.input_sd, ref.lse, where == DeviceKind::cuda, check::lse_logit_rounding(t));
    rows.push_back({"out", check::judge_forward(t.out, ref, c.dtype), check::judge_lse(t.lse, ref.lse, lse_tol), true});
    return rows;
  }
  const check::BackwardOracle ref = check::oracle_backward(t);
  const check::BackwardYardstick y = check::naive_backward(t, ref);
  for (const auto& g : check::judge_backward(t, ref, y)) rows.push_back({g.name, g.v, {}, false});
  if (c.sinks) rows.push_back({"dsinks", check::judge_dsinks(t, ref, y), {}, false});
  if (c.has_bias()) rows.push_back({"dbias", check::judge_dbias(t, ref, y), {}, false});
  return rows;
}

/// One case's result: its rows, or the Error that stopped it (skip: unsupported by this build or shape).
struct Outcome {
  Report rep;
  std::int64_t listed = -1;  ///< blocks of the kv lists given to the call (run_case)
  std::vector<Row> rows;
  std::string error;
  bool skip = false;
  /// The error is about the sparse arguments the flags made (e.g. --block not a multiple of the CUDA tile):
  /// its CLI line (usage_line), for a user's workload to refuse as bad input.
  std::string sparse_usage;
};

Outcome run_outcome(const CheckCase& cc, DeviceKind where, std::uint64_t seed) {
  Outcome o;
  try {
    o.rows = run_case(cc, where, seed, o.rep, o.listed);
  } catch (const Error& e) {
    o.skip = e.kind() == Error::Kind::unsupported;
    o.error = e.what();
    const std::string& a = e.argument();
    if (e.kind() != Error::Kind::runtime && (a.rfind("block_sparse.", 0) == 0 || a.rfind("local_global.", 0) == 0))
      o.sparse_usage = usage_line(e);
  }
  return o;
}

/// Fuzz case `idx` of the run with `seed`: a function of (seed, idx) alone. Half are forward cases (the
/// dataflow fuzz_case drew), half forward + backward (the forward on the automatic dataflow, unjudged).
CheckCase fuzz_check_case(std::uint64_t seed, std::int64_t idx, const std::vector<DType>& dtypes) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(idx));
  CheckCase cc;
  const DType dt = dtypes[std::uniform_int_distribution<std::size_t>(0, dtypes.size() - 1)(rng)];
  cc.c = check::fuzz_case(rng, dt, 200);
  cc.backward = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  if (cc.backward) cc.c.options.dataflow = Dataflow::automatic;
  cc.feature = fmt::format("fuzz #{}", idx);
  return cc;
}

std::string options_str(const Options& o) {
  std::string s;
  if (o.causal) s += o.causal_align == CausalAlign::bottom_right ? "causal " : "causal-tl ";
  if (o.window.left >= 0 || o.window.right >= 0)
    s += fmt::format("win({},{}){} ", o.window.left, o.window.right, o.causal_align == CausalAlign::top_left ? "-tl" : "");
  if (o.softcap > 0) s += fmt::format("cap{} ", o.softcap);
  if (o.dropout_p > 0) s += fmt::format("drop{} ", o.dropout_p);
  if (o.softmax_scale && *o.softmax_scale < 0) s += fmt::format("scale{:.3g} ", *o.softmax_scale);
  if (o.deterministic) s += "det ";
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
  const bool fuzz = f.fuzz > 0;
  std::vector<CheckCase> cases;
  Workload w;  // the user's workload (f.own)
  if (f.own) {
    if (fuzz)
      throw UsageError("--fuzz", fmt::format("{} with the workload flags (--n, --density, --global, ...)", f.fuzz),
                       "either --fuzz (random cases) or one workload of your own (its flags), not both");
    resolve_shape(f.w, w);
    w.device = dev;
    w.dtype = dtypes.front();  // shown by w.str(); each case takes its own
    w.seed = seed;  // the lists: those of `flatattn run --seed` with the same flags
    resolve_sparse(f.w, w);
    const double oracle = static_cast<double>(w.batch) * oracle_flops_per_sequence(w);
    if (oracle > kOracleLimit)
      throw UsageError("--n", fmt::format("{}: the fp64 oracle would score {:.3g} GFLOP", w.str(), oracle / 1e9),
                       fmt::format("up to {:.3g} GFLOP (4 B Hq D Nq Nk; minutes of host fp64 work beyond): a smaller "
                                   "--n, --batch, --hq or --d", kOracleLimit / 1e9));
    cases = workload_cases(w, dtypes);
  } else if (!fuzz) {
    cases = check_sweep(dtypes, f.quick);
  }
  const std::int64_t total = fuzz ? f.fuzz : static_cast<std::int64_t>(cases.size());
  const Machine m = this_machine();
  const auto print_header = [&] {
    std::printf("flatattn check: %zu cases on %s, seed %llu (replay with --seed %llu)\n", cases.size(),
                std::string(name(dev)).c_str(), static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(seed));
    if (f.own) std::printf("workload: %s\n%s", w.str().c_str(), w.sparse() ? sparse_report(w, sparse_stats(w), false).c_str() : "");
    std::printf("%s\n\n", kRuleLine);
  };
  if (!f.json && !fuzz && !f.own) print_header();  // a user's workload: after its cases, which may refuse it
  if (!f.json && fuzz)
    std::printf("flatattn check --fuzz: cases %lld..%lld%s on %s, seed %llu (replay case I with --seed %llu --fuzz 1 "
                "--fuzz-first I)\n%s\n\n",
                static_cast<long long>(f.fuzz_first), static_cast<long long>(f.fuzz_first + total - 1),
                f.seconds > 0 ? fmt::format(" (at most {} s)", f.seconds).c_str() : "", std::string(name(dev)).c_str(),
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed), kRuleLine);
  Table table({"#", "case", "shape", "dtype", "options", "ran", "output", "max err", "bound", "rel err", "lse err", "result"},
              {true, false, false, false, false, false, false, true, true, true, true, false});
  json jrows = json::array();
  int passed = 0, failed = 0, skipped = 0, idx = 0;
  std::int64_t ran_cases = 0;
  const auto start = std::chrono::steady_clock::now();
  auto case_at = [&](std::int64_t i) {
    return fuzz ? fuzz_check_case(seed, f.fuzz_first + i, dtypes) : cases[static_cast<std::size_t>(i)];
  };
  auto index_of = [&](std::int64_t i) { return static_cast<int>(fuzz ? f.fuzz_first + i : i + 1); };
  // Run the cases (--jobs host threads take the next index in turn; each case is a function of its index, so
  // the rows below are the same whatever the thread count), then list them in index order.
  std::map<std::int64_t, Outcome> done;  // by case index; only the cases run (a time-boxed fuzz stops early)
  std::mutex done_mu;
  std::atomic<std::int64_t> next{0};
  auto worker = [&] {
    for (;;) {
      if (fuzz && f.seconds > 0 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > f.seconds)
        return;
      const std::int64_t i = next.fetch_add(1);
      if (i >= total) return;
      Outcome o = run_outcome(case_at(i), dev, seed + static_cast<std::uint64_t>(index_of(i)));
      const std::lock_guard<std::mutex> lock(done_mu);
      done.emplace(i, std::move(o));
    }
  };
  const int jobs = fuzz ? std::max(1, f.jobs) : 1;
  if (jobs == 1) {
    worker();
  } else {
    // Each worker's oracle and checks (OpenMP loops, src/reference/parallel.h) get its share of the threads,
    // not all of them: jobs x OMP_NUM_THREADS threads would oversubscribe the host (results do not change).
    const int share = std::max(1, omp_get_max_threads() / jobs);
    std::vector<std::thread> pool;
    for (int j = 0; j < jobs; ++j) pool.emplace_back([&] {
      omp_set_num_threads(share);
      worker();
    });
    for (std::thread& t : pool) t.join();
  }
  if (f.own) {
    // Bad sparse flags the library found (the CUDA tile): bad input, exit 2, before any output.
    for (const auto& [i, out] : done)
      if (!out.sparse_usage.empty()) throw UsageError(out.sparse_usage);
    if (!f.json) print_header();
  }
  for (const auto& [i, out] : done) {
    const CheckCase cc = case_at(i);
    const check::Case& c = cc.c;
    idx = index_of(i);
    ++ran_cases;
    const std::string fwd_or_bwd = cc.backward ? "bwd" : name(c.options.dataflow).data();
    const std::string label = fmt::format("{} [{}]", cc.feature, cc.backward ? "bwd" : "fwd");
    const Report& rep = out.rep;
    const std::vector<Row>& rows = out.rows;
    const std::string& error = out.error;
    const bool skip = out.skip;
    const std::string ran = cc.backward || rep.block_m == 0
                                ? fwd_or_bwd
                                : fmt::format("{} {}x{}", name(rep.dataflow), rep.block_m, rep.block_n);
    if (!error.empty()) {
      (skip ? skipped : failed) += 1;
      table.add({std::to_string(idx), label, shape_str(c), std::string(name(c.dtype)), options_str(c.options),
                 fwd_or_bwd, "-", "-", "-", "-", "-", skip ? "SKIP" : "FAIL"});
      jrows.push_back({{"case", label}, {"shape", shape_str(c)}, {"dtype", name(c.dtype)}, {"dataflow", fwd_or_bwd},
                       {"result", skip ? "SKIP" : "FAIL"}, {"error", error}});
      if (!f.json && !(fuzz && skip)) std::fprintf(stderr, "  #%d %s: %s\n", idx, skip ? "skipped" : "error", error.c_str());
      continue;
    }
    for (const Row& r : rows) {
      const bool ok = r.v.pass && (!r.has_lse || r.lse.pass);
      (ok ? passed : failed) += 1;
      if (fuzz && ok) continue;  // the fuzz lists what did not pass
      if (fuzz && !f.json)
        std::fprintf(stderr, "  #%d FAILED (%s %s): replay with --device %s --seed %llu --fuzz 1 --fuzz-first %d\n", idx,
                     c.name().c_str(), r.what.c_str(), std::string(name(dev)).c_str(),
                     static_cast<unsigned long long>(seed), idx);
      table.add({std::to_string(idx), label, shape_str(c), std::string(name(c.dtype)), options_str(c.options), ran, r.what,
                 fmt::format("{:.2e}", r.v.max_err), fmt::format("{:.2e}", r.v.bound), fmt::format("{:.2e}", r.v.rel_err),
                 r.has_lse ? fmt::format("{:.1e}", r.lse.max_err) : "-",
                 ok ? "PASS" : (r.v.nonfinite || r.lse.nonfinite ? "FAIL (non-finite)" : "FAIL")});
      json jr = {{"case", label}, {"shape", shape_str(c)}, {"dtype", name(c.dtype)}, {"options", options_str(c.options)},
                 {"ran", ran}, {"output", r.what}, {"check", to_json(r.v)}, {"result", ok ? "PASS" : "FAIL"}};
      if (out.listed >= 0) jr["listed_blocks"] = out.listed;
      if (r.has_lse) jr["lse"] = to_json(r.lse);
      jrows.push_back(jr);
    }
  }
  if (f.json) {
    json out = {{"command", "check"}, {"device", name(dev)}, {"seed", seed},     {"machine", m.to_json()},
                {"rule", kRuleLine},  {"rows", jrows},       {"passed", passed}, {"failed", failed},
                {"skipped", skipped}};
    if (f.own) {
      out["workload"] = w.to_json();
      out["workload"]["dtype"] = json::array();  // the rows' dtypes
      for (DType d : dtypes) out["workload"]["dtype"].push_back(name(d));
      if (w.sparse()) out["sparse"] = sparse_json(w, sparse_stats(w));
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    if (fuzz)
      std::printf("%s\nfuzz: %lld of %lld cases in %.0f s\n", failed > 0 ? table.str().c_str() : "",
                  static_cast<long long>(ran_cases), static_cast<long long>(total),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    else
      std::printf("%s\n", table.str().c_str());
    std::printf("%d passed, %d failed, %d skipped (unsupported by this build or for the shape)\n", passed, failed, skipped);
  }
  if (failed > 0 || passed == 0) throw CommandFailed{1};
}

}  // namespace

void register_check(CLI::App& app) {
  auto f = std::make_shared<CheckFlags>();
  f->w.n = kCheckN;
  f->w.hq = kCheckHq;
  f->w.batch = kCheckBatch;
  CLI::App* sub = app.add_subcommand(
      "check", "Sweep of shapes, dtypes and features (GQA, windows, softcap, Nq != Nk, odd N, varlen, strides, "
               "backward) against the fp64 oracle; one row per case; exit 1 on any failure.");
  sub->footer(std::string("Each row compares whole outputs (and LSE: |lse - ref| <= tol max(1, |ref|), tol = 1e-5 on cpu, 2e-4 on "
                          "cuda, normwise for large logits) with the oracle.\n"
                          "With any workload flag (--n, --nk, --batch, --hq, --hkv, --d, --causal, --window, --density, "
                          "--block, --global): that one workload instead of the sweep (defaults B = 2, N = 256, Hq = 4, "
                          "D = 64, causal), forward (flash, flat) and backward per dtype, with the sparse mask `flatattn "
                          "run` builds from the same flags and --seed.\n") +
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
  sub->add_option("--fuzz", f->fuzz, "a differential fuzz instead of the sweep: this many random cases (shapes, dtypes, "
                                     "features, forward or backward); only failures are listed")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  sub->add_option("--fuzz-first", f->fuzz_first, "index of the first fuzz case (replay one: --fuzz 1 --fuzz-first I)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40))
      ->capture_default_str();
  sub->add_option("--seconds", f->seconds, "with --fuzz: stop drawing cases after this many seconds (0 = no limit)")
      ->check(CLI::Range(0.0, 1e7));
  sub->add_option("--jobs", f->jobs, "with --fuzz: host threads running cases at once (the fp64 oracle is the host's "
                                     "work; the rows do not depend on it)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  add_shape_flags(*sub, f->w);
  add_sparse_flags(*sub, f->w);
  sub->callback([f, sub] {
    f->own = false;  // a workload of one's own when any of its flags is given
    for (const char* flag : {"--batch", "--n", "--nk", "--hq", "--hkv", "--d", "--causal", "--causal-align", "--window",
                             "--density", "--block", "--global"})
      f->own = f->own || sub->get_option(flag)->count() > 0;
    check(*f);
  });
}

}  // namespace flatattn::cli
