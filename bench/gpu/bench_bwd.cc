// Times flatattn's CUDA forward (Flash), backward (default and deterministic) and forward + backward
// through the public API: bf16, Hq = 16, B * N = 16k tokens (B = 16 .. 2 for N = 1k .. 8k), D = 64 and
// 128, causal and not, (B, H, N, D) storage passed as (B, N, H, D) views like bench_fwd. Timed like
// triton's do_bench (timing.h: L2 flushed before each call, CUDA events around the call alone, median).
// FLOPs as the FlashAttention papers count them: forward 4 B H N^2 D (halved for causal), backward
// 2.5x the forward (five N x N x D products instead of two), forward + backward 3.5x.
//
//   bench_bwd --out ours_bwd.json [--d 64,128] [--n 1024,2048,4096,8192] [--h 16] [--reps 30] [--commit HASH]
//             [--dropout P]
// --dropout P (0 < P < 1): each row also times forward, backward and forward + backward with dropout P (fixed
// seed and offset) in the same run, and reports the forward + backward overhead over the same call without it
// (issue 15's target: <= 15 % at D = 128, <= 25 % at D = 64, p = 0.1).
#include <cuda_runtime.h>

#include <algorithm>
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

/// Median ms of fn, or -1 with the error text when the call throws.
template <class Fn>
double time_or_error(flatattn::bench::Timer& timer, Fn&& fn, int warmup, int reps, std::string& error) {
  try {
    fn();
    return timer.median_ms(fn, warmup, reps);
  } catch (const flatattn::Error& e) {
    error = e.what();
    return -1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "ours_bwd.json", commit = "unknown";
  std::vector<long> ds = {64, 128}, ns = {1024, 2048, 4096, 8192};
  long h = 16;
  int reps = 30, warmup = 5;
  float dropout = 0.f;
  if (!flatattn::bench::parse_options(argc, argv, {
      {"--out", [&](const std::string& v) { out = v; }},
      {"--d", [&](const std::string& v) { ds = parse_list(v); }},
      {"--n", [&](const std::string& v) { ns = parse_list(v); }},
      {"--h", [&](const std::string& v) { h = std::stol(v); }},
      {"--reps", [&](const std::string& v) { reps = std::stoi(v); }},
      {"--commit", [&](const std::string& v) { commit = v; }},
      {"--dropout", [&](const std::string& v) { dropout = std::stof(v); }},
      }))
    return 2;
  flatattn::bench::Timer timer;
  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "properties");
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);

  // Buffers sized for the largest (B N H D) of the grid, filled once with N(0,1) bf16 (q, k, v, dout
  // are the same values at different offsets); out and lse come from our forward before each backward.
  const long kTokens = 16384;
  const long width = h * *std::max_element(ds.begin(), ds.end());
  const long elems = kTokens * width;
  void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *lse;
  for (void** p : {&q, &k, &v, &o, &dout, &dq, &dk, &dv}) ok(cudaMalloc(p, elems * 2), "cudaMalloc");
  ok(cudaMalloc(&lse, kTokens * h * 4), "cudaMalloc(lse)");
  flatattn::bench::fill_random_bf16({q, k, v, dout}, elems);

  std::ostringstream js;
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  js << "{\"device\": " << json_str(prop.name) << ", \"sms\": " << prop.multiProcessorCount
     << ", \"driver\": " << driver << ", \"cuda_runtime\": " << runtime << ", \"commit\": " << json_str(commit)
     << ", \"date\": " << json_str(date) << ", \"rows\": [\n";
  bool first = true;
  std::printf("%4s %5s %2s %3s %3s | %8s %8s %8s %8s | TFLOP/s fwd bwd fwd+bwd bwd-det\n", "D", "N", "c", "B", "H",
              "fwd ms", "bwd ms", "f+b ms", "det ms");
  for (long d : ds) {
    for (long n : ns) {
      const long b = std::max(1L, kTokens / n);
      for (bool causal : {false, true}) {
        using flatattn::DType;
        using flatattn::TensorView;
        auto view = [&](void* p) { return flatattn::bench::bhnd_view(p, b, n, h, d); };
        flatattn::ForwardArgs fa;
        fa.q = view(q);
        fa.k = view(k);
        fa.v = view(v);
        fa.out = view(o);
        fa.lse = TensorView::strided(lse, DType::f32, {b, h, n}, {h * n, n, 1}, flatattn::Device::cuda(0));
        flatattn::BackwardArgs ba;
        ba.dout = view(dout);
        ba.q = fa.q;
        ba.k = fa.k;
        ba.v = fa.v;
        ba.out = fa.out;
        ba.lse = fa.lse;
        ba.dq = view(dq);
        ba.dk = view(dk);
        ba.dv = view(dv);
        flatattn::Options opt;
        opt.causal = causal;
        opt.return_lse = true;
        opt.dataflow = flatattn::Dataflow::flash;  // the training path
        std::string err, bwd_kernel;
        const double f_ms = time_or_error(timer, [&] { flatattn::forward(fa, opt); }, warmup, reps, err);
        const double b_ms = time_or_error(
            timer, [&] { bwd_kernel = flatattn::backward(ba, opt).kernel; }, warmup, reps, err);
        const double fb_ms = time_or_error(
            timer,
            [&] {
              flatattn::forward(fa, opt);
              flatattn::backward(ba, opt);
            },
            warmup, reps, err);
        flatattn::Options det = opt;
        det.deterministic = true;
        const double d_ms = time_or_error(timer, [&] { flatattn::backward(ba, det); }, warmup, reps, err);
        double fd_ms = -1, bd_ms = -1, fbd_ms = -1;
        if (dropout > 0.f) {  // the same calls with dropout, same run
          flatattn::Options drop = opt;
          drop.dropout_p = dropout;
          drop.dropout_seed = 0x243f6a8885a308d3ull;
          drop.dropout_offset = 0;
          fd_ms = time_or_error(timer, [&] { flatattn::forward(fa, drop); }, warmup, reps, err);
          bd_ms = time_or_error(timer, [&] { flatattn::backward(ba, drop); }, warmup, reps, err);
          fbd_ms = time_or_error(
              timer,
              [&] {
                flatattn::forward(fa, drop);
                flatattn::backward(ba, drop);
              },
              warmup, reps, err);
        }
        const double fwd = 4.0 * b * h * n * n * d / (causal ? 2.0 : 1.0);
        auto tf = [](double flops, double ms) { return ms > 0 ? flops / (ms * 1e-3) / 1e12 : -1.0; };
        if (dropout > 0.f)
          std::printf("     dropout %.2f: fwd %8.3f ms  bwd %8.3f ms  f+b %8.3f ms  f+b overhead %+6.1f %%\n", dropout,
                      fd_ms, bd_ms, fbd_ms, fb_ms > 0 && fbd_ms > 0 ? 100.0 * (fbd_ms / fb_ms - 1.0) : 0.0);
        std::printf("%4ld %5ld %2d %3ld %3ld | %8.3f %8.3f %8.3f %8.3f | %6.1f %6.1f %6.1f %6.1f %s\n", d, n,
                    causal ? 1 : 0, b, h, f_ms, b_ms, fb_ms, d_ms, tf(fwd, f_ms), tf(2.5 * fwd, b_ms),
                    tf(3.5 * fwd, fb_ms), tf(2.5 * fwd, d_ms), err.c_str());
        std::fflush(stdout);
        js << (first ? "" : ",\n") << "  {\"D\": " << d << ", \"N\": " << n << ", \"B\": " << b << ", \"H\": " << h
           << ", \"causal\": " << (causal ? "true" : "false") << ", \"fwd_flops\": " << fwd
           << ", \"fwd_ms\": " << f_ms << ", \"bwd_ms\": " << b_ms << ", \"fwdbwd_ms\": " << fb_ms
           << ", \"bwd_det_ms\": " << d_ms << ", \"fwd_tflops\": " << tf(fwd, f_ms)
           << ", \"bwd_tflops\": " << tf(2.5 * fwd, b_ms) << ", \"fwdbwd_tflops\": " << tf(3.5 * fwd, fb_ms)
           << ", \"bwd_det_tflops\": " << tf(2.5 * fwd, d_ms) << ", \"dropout_p\": " << dropout
           << ", \"fwd_dropout_ms\": " << fd_ms << ", \"bwd_dropout_ms\": " << bd_ms
           << ", \"fwdbwd_dropout_ms\": " << fbd_ms << ", \"bwd_kernel\": " << json_str(bwd_kernel)
           << ", \"error\": " << json_str(err) << "}";
        first = false;
      }
    }
  }
  js << "\n]}\n";
  std::ofstream(out) << js.str();
  for (void* p : {q, k, v, o, dout, dq, dk, dv, lse}) cudaFree(p);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
