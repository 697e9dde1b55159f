// `flatattn model decode`: the decode step's predicted time per split count (src/model/decode.h), the model's pick
// next to the runtime rule's (src/cuda/policy/decode_plan.h), and the model against a bench_decode JSON.
//   flatattn model decode --batch 1 --ctx 8192 --heads 32/8 [--page 16] [--qlen 1] [--d 128] [--hw h100]
//   flatattn model decode --measured bench/results/stop33-decode-splits-h100-a74672a.json [-v] [--fit out.json]
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flags.h"
#include "flatattn/error.h"
#include "src/cuda/policy/decode_plan.h"  // plain C++: the runtime's split rule
#include "src/model/decode.h"
#include "src/model/decode_compare.h"
#include "src/model/export.h"

namespace flatattn::cli {

namespace {

using namespace flatattn::model;

struct DecodeArgs {
  std::string hw = "h100", heads = "32/8", dtype = "bf16", measured, fit;
  std::int64_t batch = 1, ctx = 8192, page = 16, qlen = 1, d = 128, capacity = 0;
  std::vector<int> splits;
  bool verbose = false;
};

/// "32/8" -> {32, 8}; "32" -> {32, 32}. Throws UsageError naming --heads.
std::pair<std::int64_t, std::int64_t> parse_heads(const std::string& s) {
  const auto bad = [&] {
    return UsageError("--heads", "'" + s + "' is not Hq/Hkv", "Hq/Hkv with Hkv dividing Hq, e.g. 32/8 (or Hq alone: MHA)");
  };
  const std::size_t slash = s.find('/');
  std::int64_t hq = 0, hkv = 0;
  try {
    std::size_t pos = 0;
    hq = std::stoll(s.substr(0, slash), &pos);
    if (pos != s.substr(0, slash).size()) throw bad();
    if (slash == std::string::npos) {
      hkv = hq;
    } else {
      const std::string t = s.substr(slash + 1);
      hkv = std::stoll(t, &pos);
      if (pos != t.size()) throw bad();
    }
  } catch (const UsageError&) {
    throw;
  } catch (...) {
    throw bad();
  }
  if (hq < 1 || hkv < 1 || hq % hkv != 0) throw bad();
  return {hq, hkv};
}

/// The runtime rule's count for `s` on `gpu` (what forward_kvcache.cc passes it: the SM count, the resident CTAs, and
/// the cache capacity in keys, since the host does not read cache_seqlens).
int rule_splits(const DecodeShape& s, std::int64_t capacity, const Gpu& gpu) {
  cuda::DecodeWork w;
  w.batch = s.batch;
  w.hkv = s.hkv;
  w.row_blocks = s.row_blocks();
  w.keys = capacity;
  w.sm_count = gpu.sms;
  w.ctas_per_sm = decode_resident_ctas_per_sm(s.d, gpu);
  return cuda::plan_decode_splits(w);
}

Gpu gpu_of(const std::string& name) {
  const Hardware hw = load_hardware(name);
  if (hw.kind != Hardware::Kind::gpu)
    throw Error(Error::Kind::invalid_argument, "--hw", name, "the decode model is a GPU model", "use h100 or a GPU file");
  return hw.gpu;
}

void run_shape(const DecodeArgs& a) {
  const Gpu gpu = gpu_of(a.hw);
  DecodeShape s;
  std::tie(s.hq, s.hkv) = parse_heads(a.heads);
  s.batch = a.batch;
  s.context = a.ctx;
  s.page = a.page;
  s.q_len = a.qlen;
  s.d = a.d;
  if (a.dtype == "bf16") s.dtype = DType::bf16;
  else if (a.dtype == "f16") s.dtype = DType::f16;
  else throw UsageError("--dtype", "'" + a.dtype + "' is not a decode dtype", "bf16, f16");
  s.validate();
  const std::int64_t capacity = a.capacity > 0 ? a.capacity : s.context;
  if (capacity < s.context)
    throw UsageError("--capacity", std::to_string(capacity) + " is below --ctx = " + std::to_string(s.context),
                     "a capacity >= --ctx (keys the cache holds per sequence)");
  const int model = model_decode_splits(s, gpu), rule = rule_splits(s, capacity, gpu);
  std::set<int> ks(a.splits.begin(), a.splits.end());
  if (ks.empty()) ks = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128};
  ks.insert(model);
  ks.insert(rule);
  fmt::print("decode step on {}: B {} ctx {} heads {}/{} q_len {} page {} D {} {}; {} row block(s), {} tiles of 64 keys, "
             "{:.1f} MB of K/V\n\n", a.hw, s.batch, s.context, s.hq, s.hkv, s.q_len,
             s.page == 0 ? std::string("contiguous") : std::to_string(s.page), s.d, a.dtype, s.row_blocks(), s.tiles(),
             s.kv_bytes() * 1e-6);
  fmt::print("{:>6} {:>5} {:>8} {:>6} {:>5} {:>10} {:>10} {:>9} {:>9} {:>8}  {}\n", "splits", "used", "tiles/sp", "CTAs", "waves",
             "kernel us", "combine us", "step us", "GB/s", "bound", "");
  for (int k : ks) {
    const DecodePrediction p = predict_decode(s, k, gpu);
    std::string tag = k == model ? "model" : "";
    if (k == rule) tag += tag.empty() ? "rule" : ", rule";
    fmt::print("{:>6} {:>5} {:>8} {:>6} {:>5} {:>10.1f} {:>10.1f} {:>9.1f} {:>9.0f} {:>8}  {}\n", k, p.splits, p.tiles_per_split, p.ctas,
               p.waves, p.kernel_us, p.combine_us, p.step_us, p.gbps(), p.bandwidth_bound() ? "HBM" : "latency", tag);
  }
  const double mu = predict_decode(s, model, gpu).step_us, ru = predict_decode(s, rule, gpu).step_us;
  fmt::print("\n\"used\": the splits that get a tile (the kernel gives each ceil(tiles / splits)); bound: which term of a "
             "wave is larger, one CTA's tile latency or the wave's bytes at the fitted read rate\n");
  fmt::print("model's pick: {} splits ({:.1f} us); rule's pick: {} splits ({:.1f} us, {:+.1f} % by the model)\n", model, mu,
             rule, ru, 100 * (ru / mu - 1));
}

std::string shape_label(const DecodeShape& s) {
  return fmt::format("B {} ctx {} {}/{} q {} page {}", s.batch, s.context, s.hq, s.hkv, s.q_len, s.page);
}

void run_measured(const DecodeArgs& a) {
  Gpu gpu = gpu_of(a.hw);
  const std::vector<DecodeMeasured> rows = load_decode_measured(a.measured);
  if (!a.fit.empty()) {
    gpu.decode = fit_decode(gpu, rows);
    const DecodeCalib& c = *gpu.decode;
    nlohmann::ordered_json j;
    j["base"] = a.hw;
    j["name"] = std::filesystem::path(a.fit).stem().string();
    j["decode"] = {{"start_us", c.start_us},     {"wave_us", c.wave_us},       {"tile_us_row_pages", c.tile_us_row_pages},
                   {"tile_us_tile_pages", c.tile_us_tile_pages}, {"stream_gbps", c.stream_gbps},
                   {"combine_us", c.combine_us}, {"combine_split_us", c.combine_split_us}};
    j["notes"] = {{"decode", "fitted by `flatattn model decode --measured " + a.measured + " --fit` (" +
                                 std::to_string(rows.size()) + " rows)"}};
    write_text_file(a.fit, j.dump(2) + "\n");
    fmt::print("fitted on {} rows, wrote {} (use it as --hw {}):\n  {}\n\n", rows.size(), a.fit, a.fit, j["decode"].dump());
  }
  const DecodeComparison c = compare_decode(gpu, rows);
  if (a.verbose) {
    fmt::print("{:<36} {:>6} {:>12} {:>10} {:>10} {:>7}\n", "shape", "splits", "mode", "measured", "predicted", "error");
    for (const DecodeRow& r : c.rows)
      fmt::print("{:<36} {:>6} {:>12} {:>10.4f} {:>10.4f} {:>+6.1f}%\n", shape_label(r.measured.shape), r.measured.splits,
                 r.measured.mode, r.measured.ms, r.predicted_ms, 100 * (r.predicted_ms / r.measured.ms - 1));
    fmt::print("\n");
  }
  fmt::print("{} split-KV rows of {} on {}: median |error| {:.1f} %, max {:.1f} %, Spearman {:.3f}\n", c.rows.size(),
             a.measured, a.fit.empty() ? a.hw : a.fit + " (just fitted)", 100 * c.median_rel_error, 100 * c.max_rel_error, c.spearman);
  if (c.picks.empty()) return;
  fmt::print("\npicks on the {} shapes measured at >= 2 split counts (ms at the pick / the fastest measured):\n",
             c.picks.size());
  fmt::print("{:<36} {:>5} {:>12} {:>12} {:>6}  {}\n", "shape", "best", "model", "rule", "free", "measured counts");
  for (const DecodePick& p : c.picks) {
    std::string counts;
    for (std::size_t i = 0; i < p.splits.size(); ++i) counts += fmt::format("{}{}:{:.4f}", i ? " " : "", p.splits[i], p.ms[i]);
    const std::string rule = std::isfinite(p.rule_loss) ? fmt::format("{} {:+.1f}%", p.rule, 100 * p.rule_loss)
                                                        : fmt::format("{} (n/m)", p.rule);
    fmt::print("{:<36} {:>5} {:>12} {:>12} {:>6}  {}\n", shape_label(p.shape), p.best,
               fmt::format("{} {:+.1f}%", p.model, 100 * p.model_loss), rule, p.model_free, counts);
  }
  fmt::print("\nwithin 2 % of the fastest: model {}/{}, rule {}/{} (of the shapes where the rule's count was measured)\n",
             c.model_ok, c.picks.size(), c.rule_ok, c.rule_measured);
}

}  // namespace

void register_model_decode(CLI::App& model) {
  auto a = std::make_shared<DecodeArgs>();
  CLI::App* cmd = model.add_subcommand(
      "decode", "the decode step (forward_kvcache on CUDA): predicted time and bandwidth per split count, the model's "
                "pick next to the runtime rule's; with --measured, predicted vs a bench_decode JSON (src/model/decode.h)");
  cmd->add_option("--hw", a->hw, "GPU preset or file with a \"decode\" calibration")->capture_default_str();
  cmd->add_option("--batch,-B", a->batch, "B, sequences")->capture_default_str()->check(int_at_least(1));
  cmd->add_option("--ctx", a->ctx, "keys per sequence (the cache capacity)")->capture_default_str()->check(int_at_least(1));
  cmd->add_option("--heads", a->heads, "Hq/Hkv, e.g. 32/8 (Hq alone: MHA)")->capture_default_str();
  cmd->add_option("--capacity", a->capacity,
                  "cache capacity in keys per sequence, what the runtime rule plans for (default --ctx; bench_decode: "
                  "(ceil(ctx / page) + 1) x page)")
      ->check(int_at_least(1));
  cmd->add_option("--page", a->page, "page size in keys (0: a contiguous cache)")->capture_default_str()->check(int_at_least(0));
  cmd->add_option("--qlen", a->qlen, "new query rows per sequence")->capture_default_str()->check(int_at_least(1));
  cmd->add_option("--d,-D", a->d, "head dim")->capture_default_str()->check(one_of({"64", "128", "256"}));
  cmd->add_option("--dtype", a->dtype, "bf16 or f16")->capture_default_str()->check(one_of({"bf16", "f16"}));
  cmd->add_option("--splits", a->splits, "split counts to print (default 1,2,4,...,128 and both picks)")
      ->delimiter(',')
      ->check(int_in(1, 128));
  cmd->add_option("--measured", a->measured, "a bench_decode JSON: print predicted vs measured and the picks")
      ->check(CLI::ExistingFile);
  cmd->add_option("--fit", a->fit, "with --measured: fit the decode constants to it first and write them as a hardware file");
  cmd->add_flag("--verbose,-v", a->verbose, "with --measured: print every row");
  cmd->callback([a] {
    if (!a->fit.empty() && a->measured.empty()) throw UsageError("--fit", "needs --measured FILE", "--measured FILE --fit OUT.json");
    if (a->measured.empty()) run_shape(*a);
    else run_measured(*a);
  });
}

}  // namespace flatattn::cli
