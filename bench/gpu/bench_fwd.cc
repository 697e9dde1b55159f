// Times flatattn's CUDA forward kernels (Flash and FLAT, each forced, plus what the automatic choice
// picks) on the FlashAttention-paper grid: B * N = 16k tokens, Hq * D = 2048, bf16, (B, H, N, D)
// tensors like peers_sdpa.py's, causal and not. Timed like triton's do_bench (timing.h): L2 flushed
// before each call, CUDA events around the call alone, warm-up, median of many. Each of q, k, v is
// 64 MB (16k tokens x 2048 x 2 B), larger than the H100's 50 MB L2 anyway.
//
//   bench_fwd --out ours.json [--d 64,128,256] [--n 128,...,16384] [--reps 50] [--commit HASH] [--dropout P]
// --dropout P (0 < P < 1): each row also times the Flash forward with dropout P in the same run.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "flatattn/flatattn.h"
#include "bench/gpu/bench_util.h"
#include "bench/gpu/timing.h"
#include "src/core/half.h"

namespace {

using flatattn::bench::json_str;
using flatattn::bench::ok;
using flatattn::bench::parse_list;

struct Timing {
  double ms = -1;
  std::string kernel, dataflow, error;
};

/// Median time of `reps` calls after `warmup` calls; an Error (e.g. FLAT cannot hold the row) is returned.
Timing time_forward(flatattn::bench::Timer& timer, const flatattn::ForwardArgs& a, const flatattn::Options& o,
                    int warmup, int reps) {
  Timing t;
  try {
    const flatattn::Report r = flatattn::forward(a, o);
    t.kernel = r.kernel;
    t.dataflow = std::string(flatattn::name(r.dataflow));
    t.ms = timer.median_ms([&] { flatattn::forward(a, o); }, warmup, reps);
  } catch (const flatattn::Error& e) {
    t.error = e.what();
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "ours.json", commit = "unknown";
  std::vector<long> ds = {64, 128, 256}, ns = {128, 256, 512, 1024, 2048, 4096, 8192, 16384};
  int reps = 50, warmup = 5;
  float dropout = 0.f;
  flatattn::bench::Timer timer;
  if (!flatattn::bench::parse_options(argc, argv, {
      {"--out", [&](const std::string& v) { out = v; }},
      {"--d", [&](const std::string& v) { ds = parse_list(v); }},
      {"--n", [&](const std::string& v) { ns = parse_list(v); }},
      {"--reps", [&](const std::string& v) { reps = std::stoi(v); }},
      {"--commit", [&](const std::string& v) { commit = v; }},
      {"--dropout", [&](const std::string& v) { dropout = std::stof(v); }},
      }))
    return 2;
  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "properties");
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);

  // One set of buffers sized for the grid's fixed token count, filled once with N(0,1) bf16.
  const long kTokens = 16384, kWidth = 2048, elems = kTokens * kWidth;
  std::vector<std::uint16_t> host(elems);
  std::mt19937_64 rng(12345);
  std::normal_distribution<float> nd;
  for (auto& x : host) x = flatattn::float_to_bf16(nd(rng));
  void *q, *k, *v, *o;
  for (void** p : {&q, &k, &v, &o}) ok(cudaMalloc(p, elems * 2), "cudaMalloc");
  for (void* p : {q, k, v}) ok(cudaMemcpy(p, host.data(), elems * 2, cudaMemcpyHostToDevice), "copy");
  // Different contents for q, k, v: rotate the same values by an offset.
  ok(cudaMemcpy(k, host.data() + 7, (elems - 7) * 2, cudaMemcpyHostToDevice), "copy");
  ok(cudaMemcpy(v, host.data() + 13, (elems - 13) * 2, cudaMemcpyHostToDevice), "copy");

  std::ostringstream js;
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  js << "{\"device\": " << json_str(prop.name) << ", \"sms\": " << prop.multiProcessorCount
     << ", \"driver\": " << driver << ", \"cuda_runtime\": " << runtime << ", \"commit\": " << json_str(commit)
     << ", \"date\": " << json_str(date) << ", \"rows\": [\n";
  bool first = true;
  std::printf("%5s %6s %3s %4s %3s | %9s %9s | %s\n", "D", "N", "c", "B", "H", "flash TF", "flat TF", "auto picks");
  for (long d : ds) {
    const long h = kWidth / d;
    for (long n : ns) {
      const long b = std::max(1L, kTokens / n);
      for (bool causal : {false, true}) {
        using flatattn::TensorView;
        using flatattn::DType;
        auto view = [&](void* p) { return flatattn::bench::bhnd_view(p, b, n, h, d); };
        flatattn::ForwardArgs a;
        a.q = view(q);
        a.k = view(k);
        a.v = view(v);
        a.out = view(o);
        flatattn::Options opt;
        opt.causal = causal;
        const double flops = 4.0 * b * h * n * n * d / (causal ? 2.0 : 1.0);
        opt.dataflow = flatattn::Dataflow::flash;
        const Timing fl = time_forward(timer, a, opt, warmup, reps);
        opt.dataflow = flatattn::Dataflow::flat;
        const Timing ft = time_forward(timer, a, opt, warmup, reps);
        Timing fd;
        if (dropout > 0.f) {  // the Flash forward with dropout, same run
          flatattn::Options drop = opt;
          drop.dataflow = flatattn::Dataflow::flash;
          drop.dropout_p = dropout;
          drop.dropout_seed = 0x243f6a8885a308d3ull;
          fd = time_forward(timer, a, drop, warmup, reps);
        }
        opt.dataflow = flatattn::Dataflow::automatic;
        const Timing au = time_forward(timer, a, opt, 1, 1);
        auto tf = [&](const Timing& t) { return t.ms > 0 ? flops / (t.ms * 1e-3) / 1e12 : -1.0; };
        std::printf("%5ld %6ld %3d %4ld %3ld | %9.1f %9.1f | %s\n", d, n, causal ? 1 : 0, b, h, tf(fl), tf(ft),
                    au.dataflow.c_str());
        if (dropout > 0.f)
          std::printf("      flash with dropout %.2f: %9.1f TF (%+.1f %% time)\n", dropout, tf(fd),
                      fl.ms > 0 && fd.ms > 0 ? 100.0 * (fd.ms / fl.ms - 1.0) : 0.0);
        std::fflush(stdout);
        js << (first ? "" : ",\n") << "  {\"D\": " << d << ", \"N\": " << n << ", \"B\": " << b << ", \"H\": " << h
           << ", \"causal\": " << (causal ? "true" : "false") << ", \"flops\": " << flops
           << ", \"flash_ms\": " << fl.ms << ", \"flash_tflops\": " << tf(fl) << ", \"flash_kernel\": "
           << json_str(fl.kernel.empty() ? fl.error : fl.kernel) << ", \"flat_ms\": " << ft.ms
           << ", \"flat_tflops\": " << tf(ft) << ", \"flat_kernel\": " << json_str(ft.kernel.empty() ? ft.error : ft.kernel)
           << ", \"dropout_p\": " << dropout << ", \"flash_dropout_ms\": " << (dropout > 0.f ? fd.ms : -1.0)
           << ", \"auto_dataflow\": " << json_str(au.dataflow.empty() ? au.error : au.dataflow) << "}";
        first = false;
      }
    }
  }
  js << "\n]}\n";
  std::ofstream(out) << js.str();
  for (void* p : {q, k, v, o}) cudaFree(p);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
