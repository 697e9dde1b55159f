#include "cli/workload.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/child.h"
#include "cli/device.h"
#include "cli/flags.h"
#include "cli/sparse_workload.h"
#include "flatattn/version.h"

namespace flatattn::cli {

std::string_view name(Mode m) {
  switch (m) {
    case Mode::fwd: return "fwd";
    case Mode::bwd: return "bwd";
    case Mode::fwdbwd: return "fwdbwd";
  }
  return "?";
}

Options Workload::options() const {
  Options o;
  o.softmax_scale = scale;
  o.causal = causal;
  o.causal_align = align;
  o.window = window;
  o.softcap = softcap;
  o.dropout_p = dropout;
  o.dropout_seed = seed;
  o.dataflow = dataflow;
  o.num_threads = threads;
  o.fp32_matmul = fp32_matmul;
  return o;
}

double Workload::flops(Mode mode) const {
  const double f = sparse() ? 4.0 * static_cast<double>(batch * hq * d) * sparse_stats(*this).visible_pairs
                            : forward_flops(batch, nq, nk, hq, d, options());
  switch (mode) {
    case Mode::fwd: return f;
    case Mode::bwd: return 2.5 * f;
    case Mode::fwdbwd: return 3.5 * f;
  }
  return f;
}

double Workload::tensor_bytes(Mode mode) const {
  const double es = static_cast<double>(element_size(dtype));
  const double qo = static_cast<double>(batch * nq * hq * d) * es, kv = static_cast<double>(batch * nk * hkv * d) * es;
  const double fwd = 2 * qo + 2 * kv;
  return mode == Mode::fwd ? fwd : fwd + 2 * qo + 2 * kv + static_cast<double>(batch * hq * nq) * 4;
}

std::string Workload::str() const {
  std::string s = fmt::format("B={} ", batch);
  s += nq == nk ? fmt::format("Nq=Nk={}", nq) : fmt::format("Nq={} Nk={}", nq, nk);
  return s + " " + features_str();
}

std::string Workload::features_str() const {
  std::string s = fmt::format("Hq={} Hkv={} D={} {}", hq, hkv, d, flatattn::name(dtype));
  if (causal) s += align == CausalAlign::bottom_right ? " causal" : " causal(top-left)";
  if (window.left >= 0 || window.right >= 0) s += fmt::format(" window=({},{})", window.left, window.right);
  if (softcap > 0) s += fmt::format(" softcap={}", softcap);
  if (alibi) s += " alibi";
  if (sinks) s += " sinks";
  if (dropout > 0) s += fmt::format(" dropout={}", dropout);
  if (!bias.empty()) s += fmt::format(" bias={}", bias);
  if (scale) s += fmt::format(" scale={}", *scale);
  if (fp32_matmul != Fp32Matmul::exact) s += fmt::format(" fp32-matmul={}", flatattn::name(fp32_matmul));
  return s + sparse_str(*this);
}

nlohmann::json Workload::to_json() const {
  nlohmann::json j = {{"B", batch},
                      {"Nq", nq},
                      {"Nk", nk},
                      {"Hq", hq},
                      {"Hkv", hkv},
                      {"D", d},
                      {"dtype", flatattn::name(dtype)},
                      {"causal", causal},
                      {"causal_align", align == CausalAlign::bottom_right ? "bottom-right" : "top-left"},
                      {"window", {window.left, window.right}},
                      {"softcap", softcap},
                      {"alibi", alibi},
                      {"sinks", sinks},
                      {"dropout", dropout},
                      {"bias", bias},
                      {"dataflow", flatattn::name(dataflow)},
                      {"threads", threads},
                      {"device", flatattn::name(device)},
                      {"seed", seed}};
  if (scale) j["scale"] = *scale;
  if (fp32_matmul != Fp32Matmul::exact) j["fp32_matmul"] = flatattn::name(fp32_matmul);
  if (density > 0) j["sparse"] = {{"density", density}, {"block", {block_q, block_kv}}};
  if (globals > 0) j["global"] = globals;
  return j;
}

void add_shape_flags(CLI::App& app, WorkloadFlags& f, bool with_n) {
  app.add_option("-b,--batch", f.batch, "B: sequences in the batch")->check(int_at_least(1));
  if (with_n) {
    app.add_option("-n,--n", f.n, "N: sequence length (Nq, and Nk unless --nk)")->check(int_at_least(1))->capture_default_str();
    app.add_option("--nk", f.nk, "Nk: key/value length when it differs from N (causal aligns bottom-right)")
        ->check(int_at_least(1));
  }
  app.add_option("--hq,--heads", f.hq, "Hq: query heads")->check(int_at_least(1))->capture_default_str();
  app.add_option("--hkv", f.hkv, "Hkv: key/value heads, a divisor of Hq (GQA; 1 = MQA) [default: Hq]")
      ->check(int_at_least(1));
  app.add_option("-d,--d", f.d, "D: head dim")->check(int_at_least(1))->capture_default_str();
  app.add_flag("--causal,!--no-causal", f.causal, "causal mask (default on); --no-causal for full attention");
  app.add_option("--causal-align", f.align, "corner the diagonal is aligned to when Nq != Nk")
      ->check(one_of({"bottom-right", "top-left"}))
      ->capture_default_str();
  app.add_option("--window", f.window,
                 "sliding window LEFT[,RIGHT] relative to the diagonal; -1 = unbounded (RIGHT: -1 or 0 with causal)")
      ->delimiter(',')
      ->expected(1, 2)
      ->check(int_at_least(-1));
}

void add_workload_flags(CLI::App& app, WorkloadFlags& f, bool with_n, bool with_dataflow) {
  add_shape_flags(app, f, with_n);
  app.add_option("--dtype", f.dtype, "element type: f32 (CPU only), f16, bf16; auto = f32 on cpu, bf16 on cuda")
      ->check(one_of({"auto", "f32", "f16", "bf16"}))
      ->capture_default_str();
  app.add_option("--softcap", f.softcap, "logit soft-cap c: s = c*tanh(s/c) (Gemma 2); 0 = off")->check(float_at_least(0));
  app.add_flag("--alibi", f.alibi,
               "ALiBi (Press et al. 2022) with BLOOM's slopes 2^(-8(h+1)/Hq), bias -slope*|i + Nk - Nq - j|; "
               "not with --softcap; the sampled-row check does not model it (flatattn check does)");
  app.add_flag("--sinks", f.sinks, "attention sinks (gpt-oss): one N(0,1) logit per head in every row's denominator; "
               "backward modes also compute dsinks");
  app.add_option("--bias", f.bias,
                 "additive bias with gradient, N(0,1) in the dtype: DIMS = the dims of (B, Hq, Nq) it has in full "
                 "(bhq: dense (B, Hq, Nq, Nk); hq, bq, q, bh, b, h; 1: one (Nk) row); backward modes also compute dbias; "
                 "not with --softcap, --alibi or --dropout; the sampled-row check does not model it (flatattn check does)")
      ->check(one_of({"bhq", "hq", "bq", "q", "bh", "b", "h", "1"}));
  app.add_option("--dropout", f.dropout,
                 "attention dropout probability p in [0, 1) (Philox mask from --seed; the sampled-row check is skipped: a "
                 "sampled row cannot regenerate its mask, `flatattn check` judges dropout)")
      ->check(CLI::Range(0.0, 0.999999));
  app.add_option("--scale", f.scale, "softmax scale [default: 1/sqrt(D)]")->check(float_at_least(0, false));
  if (with_dataflow)
    app.add_option("--dataflow", f.dataflow, "forward tiling: flash (online softmax), flat (row tiles), auto (planner)")
        ->check(one_of({"auto", "flash", "flat"}))
        ->capture_default_str();
  app.add_option("-t,--threads", f.threads, "CPU threads; 0 = all cores")->check(int_in(0, 4096))->capture_default_str();
  app.add_option("--fp32-matmul", f.fp32_matmul,
                 "f32 inputs: exact (fp32 products) or bf16 (rounded to bf16 on the CPU's AMX / AVX512-BF16 units, "
                 "fp32 accumulation; precision of a bf16 call: Options::fp32_matmul)")
      ->check(one_of({"exact", "bf16"}))
      ->capture_default_str();
  app.add_option("--device", f.device, "auto = cuda when this build has CUDA and a GPU is present, else cpu")
      ->check(one_of({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--seed", f.seed, "seed of the random inputs; 0 = fresh each run (printed, to replay)");
  add_sparse_flags(app, f);
}

DType parse_dtype(const std::string& s) {
  if (s == "f32") return DType::f32;
  if (s == "f16") return DType::f16;
  if (s == "bf16") return DType::bf16;
  throw UsageError("--dtype", fmt::format("'{}' is not allowed", s), "f32, f16, bf16");
}

Dataflow parse_dataflow(const std::string& s) {
  if (s == "auto") return Dataflow::automatic;
  if (s == "flash") return Dataflow::flash;
  if (s == "flat") return Dataflow::flat;
  throw UsageError("--dataflow", fmt::format("'{}' is not allowed", s), "auto, flash, flat");
}

Mode parse_mode(const std::string& s) {
  if (s == "fwd") return Mode::fwd;
  if (s == "bwd") return Mode::bwd;
  if (s == "fwdbwd") return Mode::fwdbwd;
  throw UsageError("--mode", fmt::format("'{}' is not allowed", s), "fwd, bwd, fwdbwd");
}

DeviceKind resolve_device(const std::string& v) {
  if (v == "cpu") return DeviceKind::cpu;
  if (v != "auto" && v != "cuda") throw UsageError("--device", fmt::format("'{}' is not allowed", v), "auto, cpu, cuda");
  if (!cuda_built()) {
    if (v == "cuda")
      throw UsageError("--device", "cuda: this flatattn build has no CUDA backend",
                       "cpu (rebuild with -DFLATATTN_CUDA=ON for cuda)");
    return DeviceKind::cpu;
  }
  // Counting devices initializes CUDA: ask from a child so this process stays fork-safe.
  const nlohmann::json r = run_in_child([] { return nlohmann::json{{"count", gpu::device_count()}}; });
  const int count = r.value("count", 0);
  if (count > 0) return DeviceKind::cuda;
  if (v == "cuda") throw UsageError("--device", "cuda: no CUDA device is visible", "cpu");
  return DeviceKind::cpu;
}

void resolve_shape(const WorkloadFlags& f, Workload& w) {
  w.batch = f.batch > 0 ? f.batch : 1;
  w.nq = f.n;
  w.nk = f.nk > 0 ? f.nk : f.n;
  w.hq = f.hq;
  w.hkv = f.hkv > 0 ? f.hkv : f.hq;
  w.d = f.d;
  if (w.hq % w.hkv != 0) {
    std::string divisors;
    for (std::int64_t x = 1; x <= w.hq; ++x)
      if (w.hq % x == 0) divisors += (divisors.empty() ? "" : ", ") + std::to_string(x);
    throw UsageError("--hkv", fmt::format("{} does not divide --hq = {}", w.hkv, w.hq),
                     fmt::format("a divisor of --hq ({})", divisors));
  }
  w.causal = f.causal;
  w.align = f.align == "top-left" ? CausalAlign::top_left : CausalAlign::bottom_right;
  if (!f.window.empty()) {
    w.window.left = f.window[0];
    w.window.right = f.window.size() > 1 ? f.window[1] : -1;
  }
  if (w.causal && w.window.right > 0)
    throw UsageError("--window", fmt::format("RIGHT = {} with --causal", w.window.right),
                     "RIGHT -1 or 0 with --causal (or pass --no-causal)");
}

Workload resolve(const WorkloadFlags& f) {
  Workload w;
  resolve_shape(f, w);
  w.softcap = f.softcap;
  w.alibi = f.alibi;
  w.sinks = f.sinks;
  if (w.alibi && w.softcap > 0)
    throw UsageError("--alibi", "with --softcap", "ALiBi and softcap together are not supported: drop one");
  w.dropout = f.dropout;
  if (w.alibi && w.dropout > 0)
    throw UsageError("--alibi", "with --dropout", "ALiBi and dropout together are not supported: drop one");
  w.bias = f.bias;
  if (!w.bias.empty() && (w.softcap > 0 || w.alibi || w.dropout > 0))
    throw UsageError("--bias", "with --softcap, --alibi or --dropout", "the bias comes alone among those: drop one");
  if (f.scale > 0) w.scale = f.scale;
  w.dataflow = parse_dataflow(f.dataflow);
  w.threads = f.threads;
  w.fp32_matmul = f.fp32_matmul == "bf16" ? Fp32Matmul::bf16 : Fp32Matmul::exact;
  w.device = resolve_device(f.device);
  if (f.dtype == "auto") {
    w.dtype = w.device == DeviceKind::cuda ? DType::bf16 : DType::f32;
  } else {
    w.dtype = parse_dtype(f.dtype);
    if (w.dtype == DType::f32 && w.device == DeviceKind::cuda)
      throw UsageError("--dtype", "f32 with --device cuda", "f16, bf16 on cuda (f32 runs on the cpu)");
  }
  if (w.fp32_matmul != Fp32Matmul::exact && (w.device == DeviceKind::cuda || w.dtype != DType::f32))
    throw UsageError("--fp32-matmul", fmt::format("bf16 with --dtype {} on {}", flatattn::name(w.dtype),
                                                  flatattn::name(w.device)),
                     "--fp32-matmul bf16 is for f32 inputs on the cpu (--dtype f32 --device cpu)");
  w.seed = f.seed;
  if (w.seed == 0)
    w.seed = (static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
              std::random_device{}()) | 1;
  resolve_sparse(f, w);
  return w;
}

}  // namespace flatattn::cli
