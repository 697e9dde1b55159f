// `flatattn model cp`: ring attention's predicted efficiency (src/model/context_parallel.h) for world sizes
// and tokens per GPU, causal (zigzag) and not.
//   flatattn model cp                                   H100, W = 2,4,8, 8K and 32K tokens per GPU, Hq 32, Hkv 8, D 128
//   flatattn model cp --world 8 --n 131072 --hq 8 --hkv 8 --link-gbps 400 --link-efficiency 0.9
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "flatattn/error.h"
#include "src/model/context_parallel.h"
#include "src/model/hardware.h"
#include "src/model/planner.h"

namespace flatattn::cli {

namespace {

using namespace flatattn::model;

struct CpArgs {
  std::string hw = "h100", kernels = "default", mask = "both";
  std::vector<int> world{2, 4, 8};
  std::vector<std::int64_t> n{8192, 32768};
  std::int64_t batch = 1, hq = 32, hkv = 8, d = 128;
  double link_gbps = 450, link_efficiency = 0.8;
};

std::string ms(double s) { return fmt::format("{:.3f}", s * 1e3); }

void run_cp(const CpArgs& a) {
  const Hardware hw = load_hardware(a.hw);
  if (hw.kind != Hardware::Kind::gpu)
    throw Error(Error::Kind::invalid_argument, "--hw", a.hw, "context parallelism is modelled on GPUs",
                "use h100, h200, a100 or a GPU file");
  if (a.mask != "both" && a.mask != "causal" && a.mask != "full")
    throw Error(Error::Kind::invalid_argument, "--mask", a.mask, "unknown mask", "use both, causal or full");
  const std::vector<KernelVariant> variants = load_kernel_variants(a.kernels);
  const Link link{a.link_gbps, a.link_efficiency};
  fmt::print("ring attention on {}: B={} Hq={} Hkv={} D={} bf16, fwd+bwd; link {} GB/s x {} per direction\n", hw.name,
             a.batch, a.hq, a.hkv, a.d, a.link_gbps, a.link_efficiency);
  fmt::print("per hop: forward block (planner) vs K/V shard over the link; backward 2.5x the block vs K/V + fp32 dK/dV\n\n");
  fmt::print("{:<7} {:>7} {:>3} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8} {:>7}\n", "mask", "n/GPU", "W",
             "block ms", "kv ms", "fwd ms", "bwd ms", "ideal ms", "1-GPU TF", "link/cmp", "eff");
  for (const bool causal : {true, false}) {
    if ((causal && a.mask == "full") || (!causal && a.mask == "causal")) continue;
    for (const std::int64_t n : a.n) {
      for (const int w : a.world) {
        RingShape s;
        s.world = w;
        s.batch = a.batch;
        s.n_local = n;
        s.hq = a.hq;
        s.hkv = a.hkv;
        s.d = a.d;
        s.causal = causal;
        const RingPrediction p = predict_ring(hw.gpu, variants, s, link);
        const RingHop& h = p.hops.size() > 1 ? p.hops[1] : p.hops[0];  // a hop on another rank's shard
        fmt::print("{:<7} {:>7} {:>3} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9.0f} {:>8.3f} {:>6.1f}%\n",
                   causal ? "causal" : "full", n, w, ms(h.compute_s), ms(p.hops[0].link_fwd_s), ms(p.fwd_s),
                   ms(p.bwd_s), ms(p.ideal_s), p.single_tflops, p.link_over_compute, 100 * p.efficiency);
      }
    }
  }
  fmt::print("\nblock, kv: one non-own hop's forward kernel and K/V transfer; ideal: this rank's share of the FLOPs at the\n"
             "single-GPU rate of the same kind of work (1-GPU TF, forward); eff = ideal / (fwd + bwd). Targets of\n"
             "issue 19: causal >= 92 %, full >= 95 % (measured with bench/context_parallel.py).\n");
}

}  // namespace

void register_model_cp(CLI::App& model) {
  auto a = std::make_shared<CpArgs>();
  CLI::App* cmd = model.add_subcommand(
      "cp", "context parallelism: ring attention's predicted efficiency per world size and tokens per GPU "
            "(compute per hop vs link bandwidth; src/model/context_parallel.h)");
  cmd->add_option("--hw", a->hw, "GPU preset or file")->capture_default_str();
  cmd->add_option("--kernels", a->kernels, "kernel-variant list (preset or file)")->capture_default_str();
  cmd->add_option("--world,-W", a->world, "world sizes")->delimiter(',')->capture_default_str();
  cmd->add_option("--n,-N", a->n, "tokens per GPU")->delimiter(',')->capture_default_str();
  cmd->add_option("--batch,-B", a->batch, "B")->capture_default_str();
  cmd->add_option("--hq", a->hq, "query heads")->capture_default_str();
  cmd->add_option("--hkv", a->hkv, "key/value heads (only these travel)")->capture_default_str();
  cmd->add_option("--d,-D", a->d, "head dim")->capture_default_str();
  cmd->add_option("--mask", a->mask, "both, causal (zigzag layout) or full")->capture_default_str();
  cmd->add_option("--link-gbps", a->link_gbps, "per-direction GPU-to-GPU bandwidth, GB/s")->capture_default_str();
  cmd->add_option("--link-efficiency", a->link_efficiency, "reachable fraction of it")->capture_default_str();
  cmd->callback([a] { run_cp(*a); });
}

}  // namespace flatattn::cli
