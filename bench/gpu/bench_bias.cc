// The cost of the additive bias (issue 15, item 3's target) against the same calls without it, in one run on
// the same buffers, with the device's copy bandwidth measured in the same run. For each (D, N, causal) of the
// FlashAttention-paper grid (B * N = 16k tokens, Hq * D = 2048, bf16, (B, H, N, D) tensors) it times
// forward (automatic dataflow) and forward + backward (Flash, the training path) for:
//   none        no bias
//   dense       a dense bf16 bias (B, H, N, N); fwd+bwd writes dbias (plain stores)
//   heads       a bf16 bias (1, H, N, N) broadcast over B; fwd+bwd writes dbias (fp32 atomics into a
//               workspace, then one conversion pass)
// and the budget of the target: time <= none + 1.2 x bytes / bw, with bytes = the bias's bytes for the
// forward and 3 x them for forward + backward (the forward and the backward each read the bias, the backward
// writes dbias), and bw = 2 x X / t_copy the traffic rate of a device-to-device copy of X = the dense bias's
// bytes (read + write), timed like the calls (timing.h). Each row prints time / none and time / budget
// (<= 1: within the target).
//
//   bench_bias --out bias.json [--d 64,128] [--n 1024,2048,4096] [--reps 20] [--commit HASH]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/gpu/bench_util.h"
#include "bench/gpu/timing.h"
#include "flatattn/flatattn.h"
#include "src/core/half.h"

namespace {

using flatattn::bench::json_str;
using flatattn::bench::ok;
using flatattn::bench::parse_list;

struct Variant {
  const char* name;
  bool bias, full_batch;
};
constexpr Variant kVariants[] = {{"none", false, false}, {"dense", true, true}, {"heads", true, false}};

}  // namespace

int main(int argc, char** argv) {
  std::string out = "bias.json", commit = "unknown";
  std::vector<long> ds = {64, 128}, ns = {1024, 2048, 4096};
  int reps = 20, warmup = 3;
  long width = 2048;
  if (!flatattn::bench::parse_options(argc, argv, {
      {"--out", [&](const std::string& v) { out = v; }},
      {"--d", [&](const std::string& v) { ds = parse_list(v); }},
      {"--n", [&](const std::string& v) { ns = parse_list(v); }},
      {"--reps", [&](const std::string& v) { reps = std::stoi(v); }},
      {"--width", [&](const std::string& v) { width = std::stol(v); }},
      {"--commit", [&](const std::string& v) { commit = v; }},
      }))
    return 2;
  flatattn::bench::Timer timer;
  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "properties");

  const long kTokens = 16384, elems = kTokens * width;
  const long hmax = width / *std::min_element(ds.begin(), ds.end());
  const long nmax = *std::max_element(ns.begin(), ns.end());
  const std::size_t bias_max = static_cast<std::size_t>(kTokens) * hmax * nmax;  // B H N N elements, B = 16k / N
  void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *lse, *bias, *dbias;
  for (void** p : {&q, &k, &v, &o, &dout, &dq, &dk, &dv}) ok(cudaMalloc(p, elems * 2), "cudaMalloc");
  ok(cudaMalloc(&lse, kTokens * hmax * 4), "cudaMalloc(lse)");
  ok(cudaMalloc(&bias, bias_max * 2), "cudaMalloc(bias)");
  ok(cudaMalloc(&dbias, bias_max * 2), "cudaMalloc(dbias)");
  const std::vector<std::uint16_t> host = flatattn::bench::fill_random_bf16({q, k, v, dout}, elems);
  for (std::size_t at = 0; at < bias_max; at += static_cast<std::size_t>(elems)) {  // N(0, 1) bias values
    const std::size_t n = std::min<std::size_t>(elems, bias_max - at);
    ok(cudaMemcpy(static_cast<std::uint16_t*>(bias) + at, host.data() + (at % 13), n * 2, cudaMemcpyHostToDevice),
       "copy bias");
  }

  std::ostringstream js;
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  js << "{\"device\": " << json_str(prop.name) << ", \"commit\": " << json_str(commit) << ", \"date\": "
     << json_str(date) << ", \"rows\": [\n";
  bool first = true;
  std::printf("%4s %5s %2s %3s %3s %-6s | %8s %8s | %6s %6s | %8s %8s | %6s %6s\n", "D", "N", "c", "B", "H", "bias",
              "fwd ms", "f+b ms", "fwd x", "f+b x", "fwd bud", "f+b bud", "f/bud", "fb/bud");
  for (long d : ds) {
    const long h = width / d;
    for (long n : ns) {
      const long b = std::max(1L, kTokens / n);
      const double dense_bytes = 2.0 * double(b) * double(h) * double(n) * double(n);
      // Copy bandwidth of this run: a device-to-device copy of the dense bias (read + write traffic).
      const double copy_ms = timer.median_ms(
          [&] { ok(cudaMemcpyAsync(dbias, bias, static_cast<std::size_t>(dense_bytes), cudaMemcpyDeviceToDevice), "copy"); },
          warmup, reps);
      const double bw = 2.0 * dense_bytes / (copy_ms * 1e-3);  // bytes per second
      for (bool causal : {false, true}) {
        using flatattn::DType;
        using flatattn::TensorView;
        auto view = [&](void* p) { return flatattn::bench::bhnd_view(p, b, n, h, d); };
        double base_f = 0, base_fb = 0;
        for (const Variant& var : kVariants) {
          const long bb = var.full_batch ? b : 1;
          const TensorView bv = TensorView::contiguous(bias, DType::bf16, {bb, h, n, n}, flatattn::Device::cuda(0));
          const TensorView dbv = TensorView::contiguous(dbias, DType::bf16, {bb, h, n, n}, flatattn::Device::cuda(0));
          flatattn::ForwardArgs fa;
          fa.q = view(q), fa.k = view(k), fa.v = view(v), fa.out = view(o);
          fa.lse = TensorView::strided(lse, DType::f32, {b, h, n}, {h * n, n, 1}, flatattn::Device::cuda(0));
          if (var.bias) fa.bias = bv;
          flatattn::BackwardArgs ba;
          ba.dout = view(dout), ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.lse = fa.lse;
          ba.dq = view(dq), ba.dk = view(dk), ba.dv = view(dv);
          if (var.bias) ba.bias = bv, ba.dbias = dbv;
          const flatattn::bench::FwdBwdTimes tm = flatattn::bench::time_fwd_fwdbwd(timer, fa, ba, causal, warmup, reps);
          const double f_ms = tm.fwd_ms, fb_ms = tm.fwdbwd_ms;
          const std::string& err = tm.err;
          if (!var.bias) base_f = f_ms, base_fb = fb_ms;
          const double bytes = var.bias ? 2.0 * double(bb) * double(h) * double(n) * double(n) : 0.0;
          const double bud_f = base_f + 1.2 * bytes / bw * 1e3, bud_fb = base_fb + 1.2 * 3.0 * bytes / bw * 1e3;
          const double rf = base_f > 0 && f_ms > 0 ? f_ms / base_f : -1, rfb = base_fb > 0 && fb_ms > 0 ? fb_ms / base_fb : -1;
          std::printf("%4ld %5ld %2d %3ld %3ld %-6s | %8.3f %8.3f | %6.3f %6.3f | %8.3f %8.3f | %6.3f %6.3f %s\n", d, n,
                      causal ? 1 : 0, b, h, var.name, f_ms, fb_ms, rf, rfb, bud_f, bud_fb, f_ms / bud_f, fb_ms / bud_fb,
                      err.c_str());
          std::fflush(stdout);
          js << (first ? "" : ",\n") << "  {\"D\": " << d << ", \"N\": " << n << ", \"B\": " << b << ", \"H\": " << h
             << ", \"causal\": " << (causal ? "true" : "false") << ", \"bias\": " << json_str(var.name)
             << ", \"bias_bytes\": " << bytes << ", \"copy_ms\": " << copy_ms << ", \"copy_bw_GBps\": " << bw * 1e-9
             << ", \"fwd_ms\": " << f_ms << ", \"fwdbwd_ms\": " << fb_ms << ", \"fwd_ratio\": " << rf
             << ", \"fwdbwd_ratio\": " << rfb << ", \"fwd_budget_ms\": " << bud_f << ", \"fwdbwd_budget_ms\": " << bud_fb
             << ", \"error\": " << json_str(err) << "}";
          first = false;
        }
      }
    }
  }
  js << "\n]}\n";
  std::ofstream(out) << js.str();
  for (void* p : {q, k, v, o, dout, dq, dk, dv, lse, bias, dbias}) cudaFree(p);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
