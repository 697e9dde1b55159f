// `flatattn model`: the FLAT dataflow cost model (src/model) from the command line.
//   flatattn model                      BERT on the paper's cloud accelerator, N = 512 ... 64K, all dataflows
//   flatattn model --hw edge --workload xlm --n 4096 --buffer 200KB --csv out.csv --png out.png
//   flatattn model paper                the paper's geomean FLAT/FLEX speedups (edge, cloud)
//   flatattn model plan --hw h100 -B 4 -N 4096 --hq 32 --hkv 8 -D 128 --causal
//   flatattn model plan -N 16384 --density 0.1          block-sparse: only the visited key blocks are counted
//   flatattn model plan -N 16384 --window-left 256 --window-right 256 --global 16   Longformer local + global
//   flatattn model measured times.json --hw h100 [--fit calibrated.json] [--check]
//   flatattn model list                 presets (hardware, workloads, kernel lists) and the data root
//   flatattn model cp                   ring attention's efficiency on several GPUs (cli/cmd_model_cp.cc)
//   flatattn model decode --ctx 8192 --heads 32/8   the decode step per split count (cli/cmd_model_decode.cc)
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sys/wait.h>
#include <unistd.h>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/sparse_workload.h"
#include "flatattn/error.h"
#include "src/model/compare.h"
#include "src/model/data_dir.h"
#include "src/model/export.h"
#include "src/model/planner.h"
#include "src/model/sparse_blocks.h"
#include "src/model/sweep.h"

namespace flatattn::cli {

namespace {

using namespace flatattn::model;

std::string human_bytes(double b) {
  if (!std::isfinite(b)) return "-";
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int i = 0;
  while (b >= 1024 && i < 5) {
    b /= 1024;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f} {}", b, unit[i]) : fmt::format("{:.3g} {}", b, unit[i]);
}

std::string human_time(double s) {
  if (!std::isfinite(s)) return "-";
  if (s >= 1) return fmt::format("{:.3g} s", s);
  if (s >= 1e-3) return fmt::format("{:.3g} ms", s * 1e3);
  return fmt::format("{:.3g} us", s * 1e6);
}

std::string ratio(double x) { return std::isfinite(x) ? fmt::format("{:.2f}x", x) : "-"; }

/// "200KB" (10^3), "512KiB" (2^10), "20MB", "32MiB", "2GB", or plain bytes.
double parse_size(const std::string& s) {
  std::size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (...) {
    pos = 0;
  }
  const std::string unit = s.substr(pos);
  const struct { const char* name; double mult; } units[] = {{"", 1},        {"B", 1},          {"KB", 1e3},
                                                             {"KiB", 1024},  {"MB", 1e6},       {"MiB", 1 << 20},
                                                             {"GB", 1e9},    {"GiB", 1 << 30}};
  for (const auto& u : units)
    if (pos > 0 && unit == u.name && v > 0) return v * u.mult;
  throw Error(Error::Kind::invalid_argument, "--buffer", s, "expected a positive size such as 200KB, 512KiB, 20MB or 2GB",
              "write the capacity with a unit (KB = 1000 B, KiB = 1024 B)");
}

/// "512,1024" or a range "512:65536" (doubling).
std::vector<std::int64_t> parse_ns(const std::vector<std::string>& items) {
  std::vector<std::int64_t> ns;
  for (const std::string& it : items) {
    const std::size_t colon = it.find(':');
    try {
      if (colon == std::string::npos) {
        ns.push_back(std::stoll(it));
      } else {
        const std::int64_t lo = std::stoll(it.substr(0, colon)), hi = std::stoll(it.substr(colon + 1));
        if (lo < 1 || hi < lo) throw std::invalid_argument("range");
        for (std::int64_t n = lo; n <= hi; n *= 2) ns.push_back(n);
      }
    } catch (const std::exception&) {
      throw Error(Error::Kind::invalid_argument, "--n", it, "expected integers or a doubling range LO:HI",
                  "e.g. --n 4096 or --n 512,2048 or --n 512:65536");
    }
  }
  return ns;
}

struct SweepArgs {
  std::string hw = "cloud", workload = "bert", mapspace = "full", scope = "attention", kernels = "default";
  std::vector<std::string> n, dataflows;
  std::string buffer, csv, json, png;
  std::int64_t batch = 0;
};

void print_sweep(const SweepResult& r) {
  const Hardware& h = r.hardware;
  fmt::print("hardware {} ({}){}\n", h.name, h.description,
             h.kind == Hardware::Kind::accelerator ? fmt::format(", on-chip buffer {}", human_bytes(h.accel.buffer_bytes)) : "");
  fmt::print("workload {}: B={} Hq={} Hkv={} d={} {}{}; scope {}, map space {}\n", r.workload.name, r.workload.batch,
             r.workload.heads, r.workload.kv_heads, r.workload.head_dim, std::string(name(r.workload.dtype)),
             r.workload.causal ? " causal" : "", r.options.scope == Scope::attention ? "attention (L, softmax, A)" : "layer (attention + FC)",
             std::string(r.options.space.name()));
  fmt::print("\n{:>7} {:<6} {:>10} {:>10} {:>6} {:>10} {:>9} {:>9}  {}\n", "N", "flow", "off-chip", "buffer", "util",
             "runtime", "vs flex", "vs naive", "best mapping");
  for (const SweepRow& row : r.rows) {
    const Cost& c = row.cost;
    if (!c.feasible) {
      fmt::print("{:>7} {:<6} {:>10} {:>10} {:>6} {:>10} {:>9} {:>9}  infeasible: {}\n", row.n, std::string(name(row.dataflow)),
                 "-", "-", "-", "-", "-", "-", c.infeasible_reason);
      continue;
    }
    fmt::print("{:>7} {:<6} {:>10} {:>10} {:>6.3f} {:>10} {:>9} {:>9}  {}\n", row.n, std::string(name(row.dataflow)),
               human_bytes(c.offchip_bytes), human_bytes(c.buffer_bytes), c.utilization, human_time(row.total_s()),
               ratio(r.speedup(row.n, row.dataflow, DataflowKind::flex)),
               ratio(r.speedup(row.n, row.dataflow, DataflowKind::naive)), row.mapping);
  }
  fmt::print("\ngeomean over N of the speedup over flex:");
  for (DataflowKind d : r.options.dataflows) fmt::print("  {} {}", std::string(name(d)), ratio(r.geomean_speedup(d, DataflowKind::flex)));
  fmt::print("\n");
}

void write_png(const SweepResult& r, const std::string& csv_path, const std::string& png) {
  std::filesystem::path csv = csv_path;
  if (csv.empty()) {
    csv = std::filesystem::temp_directory_path() / fmt::format("flatattn_model_{}.csv", static_cast<long>(::getpid()));
    write_text_file(csv, to_csv(r));
  }
  const std::filesystem::path script = tool_path("plot_model.py");
  const std::string cmd = fmt::format("python3 \"{}\" \"{}\" \"{}\"", script.string(), csv.string(), png);
  const int rc = std::system(cmd.c_str());
  if (csv_path.empty()) std::filesystem::remove(csv);
  if (rc != 0) {
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    const std::string why = code == 127 ? "python3 was not found"
                            : code == 3 ? "python3 has no matplotlib"
                                        : fmt::format("{} failed (exit status {})", script.string(), code);
    throw Error(Error::Kind::runtime, "--png", png, why + "; the plot needs python3 with matplotlib",
                "install them (apt-get install python3; python3 -m pip install matplotlib), or write --csv and plot "
                "it with tools/plot_model.py elsewhere");
  }
  fmt::print("wrote {}\n", png);
}

void run_sweep(const SweepArgs& a) {
  SweepOptions opt;
  opt.ns = parse_ns(a.n);
  for (const std::string& d : a.dataflows) opt.dataflows.push_back(model::parse_dataflow(d));
  if (!a.buffer.empty()) opt.buffer_bytes = parse_size(a.buffer);
  if (a.batch > 0) opt.batch = a.batch;
  opt.space = parse_mapspace(a.mapspace);
  if (a.scope == "attention") opt.scope = Scope::attention;
  else if (a.scope == "layer") opt.scope = Scope::layer;
  else throw Error(Error::Kind::invalid_argument, "--scope", a.scope, "unknown scope", "use attention or layer");
  opt.kernels = a.kernels;
  const SweepResult r = sweep(load_hardware(a.hw), load_workload(a.workload), opt);
  print_sweep(r);
  if (!a.csv.empty()) {
    write_text_file(a.csv, to_csv(r));
    fmt::print("wrote {}\n", a.csv);
  }
  if (!a.json.empty()) {
    write_text_file(a.json, to_json(r));
    fmt::print("wrote {}\n", a.json);
  }
  if (!a.png.empty()) write_png(r, a.csv, a.png);
}

void run_paper() {
  fmt::print("FLAT/FLEX geomean over bert, trxl, t5, xlm (batch 64) x N = 512 ... 64K (paper Sec. 8.1: edge 1.75x, cloud 1.65x)\n\n");
  fmt::print("{:<7} {:<6} {:>10} {:>10} {:>10}\n", "hw", "space", "attention", "layer", "vs paper");
  for (const char* hw_name : {"edge", "cloud"}) {
    const Hardware hw = load_hardware(hw_name);
    const double paper = std::string(hw_name) == "edge" ? 1.75 : 1.65;
    for (const MapSpace& space : {MapSpace::full(), MapSpace::paper()}) {
      const double att = paper_geomean_flat_over_flex(hw, space, Scope::attention);
      const double layer = paper_geomean_flat_over_flex(hw, space, Scope::layer);
      fmt::print("{:<7} {:<6} {:>10} {:>10} {:>+9.0f}%\n", hw_name, std::string(space.name()), ratio(att), ratio(layer),
                 100 * (att / paper - 1));
    }
  }
  fmt::print("\nmap space full: output, weight and input stationary; paper: output and weight only (FLAT's search).\n");
}

struct PlanArgs {
  std::string hw = "h100", kernels = "default", dtype = "bf16", dataflow = "auto";
  std::int64_t batch = 1, nq = 4096, nk = 0, hq = 32, hkv = 0, d = 128, wl = -1, wr = -1;
  bool causal = false;
  double density = 0;      ///< --density P: block-sparse, share of the key blocks visited; 0 = off
  std::int64_t global = 0;  ///< --global G: Longformer globals (floor(g N / G), as `flatattn run`); 0 = off
};

/// The sparse lines of a plan: the chosen variant's visited key blocks out of all NQB x NKB, and the FLOPs
/// counted (the visible pairs of the visited blocks) next to the dense call's.
void print_sparse_plan(const AttnShape& s, const KernelPrediction& k) {
  AttnShape dense = s;
  dense.density = 0;
  dense.globals.clear();
  const std::int64_t bm = k.variant.block_m, bn = k.variant.block_n;
  const std::int64_t nqb = (s.nq + bm - 1) / bm, nkb = (s.nk + bn - 1) / bn;
  double visited = 0;
  for (std::int64_t mb = 0; mb < nqb; ++mb) visited += key_blocks(s, mb * bm, std::min(s.nq, (mb + 1) * bm) - 1, bn).visited;
  const double total = double(nqb) * double(nkb);
  std::string mask = s.density > 0 ? fmt::format("block-sparse, density {} of the band's key blocks", s.density)
                                   : fmt::format("local + global, window ({},{}), {} global positions", s.window_left,
                                                 s.causal ? 0 : s.window_right, s.globals.size());
  fmt::print("sparse mask: {} (src/model/sparse_blocks.h)\n", mask);
  fmt::print("visited key blocks of {}: {:.6g} of {} x {} = {:.0f} (visited fraction {:.4f}) per (sequence, head)\n",
             k.variant.name, visited, nqb, nkb, total, visited / total);
  fmt::print("FLOPs: {:.4g} GFLOP, the visible pairs of the visited blocks only (the call without its sparse mask: {:.4g} GFLOP)\n",
             k.flops / 1e9, dense.flops() / 1e9);
}

void run_plan(const PlanArgs& a) {
  const Hardware hw = load_hardware(a.hw);
  if (hw.kind != Hardware::Kind::gpu)
    throw Error(Error::Kind::invalid_argument, "--hw", a.hw, "the planner needs a GPU", "use h100, h200, a100, t4 or a GPU file");
  AttnShape s;
  s.batch = a.batch;
  s.nq = a.nq;
  s.nk = a.nk > 0 ? a.nk : a.nq;
  s.hq = a.hq;
  s.hkv = a.hkv > 0 ? a.hkv : a.hq;
  s.d = a.d;
  s.causal = a.causal;
  s.window_left = a.wl;
  s.window_right = a.wr;
  if (a.density > 0 && a.global > 0)
    throw UsageError("--density", fmt::format("{} with --global {}", a.density, a.global),
                     "one of them: the planner models block-sparse or local + global, not BigBird (both)");
  s.density = a.density;
  if (a.global > 0) {
    check_global_count(a.global, s.nq, s.nk);
    s.globals = global_positions(a.global, std::min(s.nq, s.nk));
  }
  if (a.dtype == "bf16") s.dtype = DType::bf16;
  else if (a.dtype == "f16") s.dtype = DType::f16;
  else throw Error(Error::Kind::invalid_argument, "--dtype", a.dtype, "unknown dtype", "use bf16 or f16");
  Dataflow only = Dataflow::automatic;
  if (a.dataflow == "flash") only = Dataflow::flash;
  else if (a.dataflow == "flat") only = Dataflow::flat;
  else if (a.dataflow != "auto") throw Error(Error::Kind::invalid_argument, "--dataflow", a.dataflow, "unknown", "use auto, flash or flat");
  const std::vector<KernelVariant> variants = load_kernel_variants(a.kernels);
  const Plan p = plan(hw.gpu, s, variants, only);
  fmt::print("{} ({}): B={} Nq={} Nk={} Hq={} Hkv={} D={} {}{}{}{}\n", hw.name, hw.description, s.batch, s.nq, s.nk, s.hq,
             s.hkv, s.d, a.dtype, s.causal ? " causal" : "",
             s.window_left >= 0 || s.window_right >= 0 ? fmt::format(" window=({},{})", s.window_left, s.window_right) : "",
             s.density > 0 ? fmt::format(" density={}", s.density)
                           : (a.global > 0 ? fmt::format(" global={}", a.global) : ""));
  fmt::print("\n{:<26} {:<6} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8} {:>6}  {}\n", "variant", "flow", "time", "TFLOP/s", "CTAs",
             "waves", "CTA/SM", "smem", "regs", "bound / reason");
  for (const KernelPrediction& k : p.candidates) {
    if (!k.feasible) {
      fmt::print("{:<26} {:<6} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8} {:>6}  infeasible: {}\n", k.variant.name,
                 std::string(name(k.variant.dataflow)), "-", "-", "-", "-", "-", human_bytes(k.smem_bytes), k.regs_per_thread, k.reason);
      continue;
    }
    const char* bound = k.memory_s > k.schedule_s ? "memory" : k.smem_s > std::max(k.tensor_s, k.softmax_s) ? "smem"
                        : k.softmax_s > k.tensor_s ? "softmax" : "tensor";
    fmt::print("{:<26} {:<6} {:>9} {:>9.0f} {:>7} {:>7.2f} {:>6} {:>8} {:>6}  {}\n", k.variant.name,
               std::string(name(k.variant.dataflow)), human_time(k.time_s), k.tflops(), k.ctas, k.waves, k.ctas_per_sm,
               human_bytes(k.smem_bytes), k.regs_per_thread, bound);
  }
  fmt::print("\nchosen: {} ({}), predicted {}\n", p.chosen.variant.name, std::string(name(p.chosen.variant.dataflow)),
             human_time(p.chosen.time_s));
  if (s.sparse()) print_sparse_plan(s, p.chosen);
}

struct MeasuredArgs {
  std::string file, hw = "h100", fit;
  bool check = false, verbose = false, persistent = false, fit_persistent = false;
};

/// The one-tile / persistent pairs of a measured file (src/model/compare.h check_persistent): per shape both kernels'
/// measured and predicted times, the speedups and the model's pick.
void print_persistent(const Gpu& gpu, const std::vector<Measured>& m) {
  const PersistentCheck c = check_persistent(gpu, m);
  fmt::print("{:<26} {:>3} {:>6} {:>3} {:>4} {:>2} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>5} {:>6}\n", "kernel", "B", "N",
             "Hq", "D", "c", "one ms", "pers ms", "pred one", "pred p", "meas x", "pred x", "pick", "loss");
  for (const PersistentRow& r : c.rows) {
    const bool pick = r.model_picks_persistent();
    fmt::print("{:<26} {:>3} {:>6} {:>3} {:>4} {:>2} {:>9.4f} {:>9.4f} {:>9.4f} {:>9.4f} {:>7.3f} {:>7.3f} {:>5} {:>5.1f}%\n",
               r.one_tile.variant.name, r.one_tile.shape.batch, r.one_tile.shape.nq, r.one_tile.shape.hq,
               r.one_tile.shape.d, r.one_tile.shape.causal ? "y" : "n", r.one_tile.ms, r.persistent.ms, r.pred_one_tile_ms,
               r.pred_persistent_ms, r.measured_speedup(), r.predicted_speedup(), pick ? "p" : "1",
               100 * PersistentRow::loss(pick, r.one_tile.ms, r.persistent.ms));
  }
  const int n = int(c.rows.size());
  fmt::print("\npersistent vs one-tile on {} shapes: the model picks the faster kernel on {}/{}, a pick losing > 2 % on {}; "
             "median speedup error {:.1f}%\n\n", n, c.picks_faster, n, c.picks_losing, 100 * c.median_speedup_error);
}

void run_measured(const MeasuredArgs& a) {
  const Hardware hw = load_hardware(a.hw);
  if (hw.kind != Hardware::Kind::gpu)
    throw Error(Error::Kind::invalid_argument, "--hw", a.hw, "predicted-vs-measured needs a GPU", "use h100, h100-measured, ...");
  const std::vector<Measured> m = load_measured(a.file);
  Gpu gpu = hw.gpu;
  if (!a.fit.empty()) {
    std::string report;
    gpu = calibrate(hw.gpu, m, hw.name, report);
    write_text_file(a.fit, report);
    fmt::print("wrote {} (calibrated constants; use it as --hw {})\n\n", a.fit, a.fit);
  }
  if (a.fit_persistent) {
    const std::string path = "sm90_ws";
    gpu = fit_persistent(gpu, m, path);
    fmt::print("fitted {}.persistent_tile_cycles = {:.0f} (cta_overhead_cycles {:.0f})\n\n", path,
               gpu.paths.at(path).persistent_tile_cycles, gpu.paths.at(path).cta_overhead_cycles);
  }
  if (a.persistent || a.fit_persistent) print_persistent(gpu, m);
  const Comparison c = compare(gpu, m);
  if (a.verbose) {
    fmt::print("{:<24} {:>4} {:>6} {:>4} {:>4} {:>2} {:>10} {:>10} {:>7}\n", "kernel", "B", "N", "Hq", "D", "c", "measured",
               "predicted", "error");
    for (const ComparedRow& r : c.rows)
      fmt::print("{:<24} {:>4} {:>6} {:>4} {:>4} {:>2} {:>10.4f} {:>10.4f} {:>6.1f}%\n", r.measured.variant.name,
                 r.measured.shape.batch, r.measured.shape.nq, r.measured.shape.hq, r.measured.shape.d,
                 r.measured.shape.causal ? "y" : "n", r.measured.ms, r.predicted_ms, 100 * r.rel_error);
    fmt::print("\n");
  }
  const bool ok_rank = c.spearman >= 0.9, ok_err = c.median_rel_error <= 0.25, ok_pick = c.pick_accuracy() >= 0.9;
  fmt::print("{} measured kernel times on {} ({} the model calls infeasible)\n", m.size(), hw.name, c.infeasible);
  fmt::print("rank correlation (Spearman)  {:.3f}   target >= 0.90  {}\n", c.spearman, ok_rank ? "ok" : "MISSED");
  fmt::print("median relative error        {:.1f}%   target <= 25%   {}\n", 100 * c.median_rel_error, ok_err ? "ok" : "MISSED");
  fmt::print("pick = measured fastest      {}/{} = {:.0f}%   target >= 90%  {}  (within 5 %: {}/{})\n", c.picks_fastest,
             c.shapes, 100 * c.pick_accuracy(), ok_pick ? "ok" : "MISSED", c.picks_within_5pct, c.shapes);
  if (a.check && !(ok_rank && ok_err && ok_pick)) throw Error(Error::Kind::runtime, "model vs measured", a.file,
                                                             "at least one target missed", "recalibrate with --fit");
}

void run_list() {
  fmt::print("data root: {}\n", data_root().string());
  auto show = [](const char* what, const std::vector<std::string>& names) {
    std::string s;
    for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
    fmt::print("{:<10} {}\n", what, s);
  };
  show("hardware", hardware_presets());
  show("workloads", workload_presets());
  show("kernels", kernel_presets());
}

}  // namespace

void register_model(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "model", "FLAT dataflow cost model: traffic, buffer, utilization and runtime of naive, flex, flat and flash "
               "dataflows on accelerators and GPUs (default: BERT on the cloud accelerator, N = 512 ... 64K)");
  auto sa = std::make_shared<SweepArgs>();
  cmd->add_option("--hw", sa->hw, "hardware preset or JSON file (flatattn model list)")->capture_default_str();
  cmd->add_option("--workload,-w", sa->workload, "workload preset or JSON file")->capture_default_str();
  cmd->add_option("--n,-N", sa->n, "sequence lengths: 4096 | 512,2048 | 512:65536 (doubling); default: the workload's")
      ->delimiter(',');
  cmd->add_option("--dataflows", sa->dataflows, "subset of naive,flex,flat,flash (default all)")->delimiter(',');
  cmd->add_option("--buffer", sa->buffer, "accelerator on-chip capacity override: 200KB, 512KiB, 20MB, 2GB");
  cmd->add_option("--batch,-B", sa->batch, "batch override");
  cmd->add_option("--mapspace", sa->mapspace, "full (output/weight/input stationary) or paper (output/weight)")
      ->capture_default_str();
  cmd->add_option("--scope", sa->scope, "attention (L, softmax, A) or layer (plus the FC operators)")->capture_default_str();
  cmd->add_option("--kernels", sa->kernels, "GPU kernel-variant list (preset or JSON file)")->capture_default_str();
  cmd->add_option("--csv", sa->csv, "write the rows as CSV");
  cmd->add_option("--json", sa->json, "write the rows and geomeans as JSON");
  cmd->add_option("--png", sa->png, "plot runtime and utilization vs N per dataflow (python3 + matplotlib)");

  CLI::App* paper = cmd->add_subcommand("paper", "the FLAT paper's geomean FLAT/FLEX speedups on edge and cloud");
  CLI::App* list = cmd->add_subcommand("list", "the data root and the presets it holds");

  auto pa = std::make_shared<PlanArgs>();
  CLI::App* plan_cmd = cmd->add_subcommand("plan", "the GPU planner: every kernel variant's predicted time for one shape");
  plan_cmd->add_option("--hw", pa->hw, "GPU preset or file")->capture_default_str();
  plan_cmd->add_option("--kernels", pa->kernels, "kernel-variant list (preset or file)")->capture_default_str();
  plan_cmd->add_option("--batch,-B", pa->batch, "B")->capture_default_str();
  plan_cmd->add_option("--nq,-N", pa->nq, "Nq")->capture_default_str();
  plan_cmd->add_option("--nk", pa->nk, "Nk (default Nq)");
  plan_cmd->add_option("--hq", pa->hq, "query heads")->capture_default_str();
  plan_cmd->add_option("--hkv", pa->hkv, "key/value heads (default Hq)");
  plan_cmd->add_option("--d,-D", pa->d, "head dim")->capture_default_str();
  plan_cmd->add_flag("--causal", pa->causal, "causal mask (bottom-right aligned)");
  plan_cmd->add_option("--window-left", pa->wl, "sliding window, keys left of the diagonal (-1 unbounded)");
  plan_cmd->add_option("--window-right", pa->wr, "sliding window, keys right of the diagonal (-1 unbounded)");
  plan_cmd->add_option("--dtype", pa->dtype, "bf16 or f16")->capture_default_str();
  plan_cmd->add_option("--dataflow", pa->dataflow, "auto, flash or flat")->capture_default_str();
  plan_cmd->add_option("--density", pa->density,
                       "block-sparse: share P in (0, 1] of the band's key blocks each query block visits (FlexAttention-"
                       "style lists); time and FLOPs count only the visited blocks (Flash kernels only)")
      ->check(density_validator());
  plan_cmd->add_option("--global", pa->global,
                       "local + global (Longformer): G global positions spread evenly (floor(g N / G)) with the "
                       "--window-left/--window-right band; time and FLOPs count only the visited blocks")
      ->check(int_in(1, 1 << 30));

  auto ma = std::make_shared<MeasuredArgs>();
  CLI::App* meas = cmd->add_subcommand(
      "measured", "predicted vs measured kernel times: Spearman rank correlation, median error, pick accuracy "
                  "(format: src/model/compare.h)");
  meas->add_option("file", ma->file, "JSON of measured times")->required()->check(CLI::ExistingFile);
  meas->add_option("--hw", ma->hw, "GPU preset or file")->capture_default_str();
  meas->add_option("--fit", ma->fit, "refit the calibration constants and write them as a hardware file");
  meas->add_flag("--check", ma->check, "exit non-zero when a target is missed");
  meas->add_flag("--verbose,-v", ma->verbose, "print every record");
  meas->add_flag("--persistent", ma->persistent,
                 "print the one-tile / persistent pairs (kernel names differing by \"_p\"): speedups and the model's picks");
  meas->add_flag("--fit-persistent", ma->fit_persistent,
                 "fit sm90_ws.persistent_tile_cycles to the file's one-tile / persistent pairs first, and print it");

  register_model_cp(*cmd);
  register_model_decode(*cmd);

  paper->callback([] { run_paper(); });
  list->callback([] { run_list(); });
  plan_cmd->callback([pa] { run_plan(*pa); });
  meas->callback([ma] { run_measured(*ma); });
  cmd->callback([cmd, sa] {
    if (cmd->get_subcommands().empty()) run_sweep(*sa);
  });
}

}  // namespace flatattn::cli
