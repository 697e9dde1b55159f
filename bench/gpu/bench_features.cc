// The cost of ALiBi and attention sinks over the same call without them, in one run on the same buffers
// (issue 15's targets: ALiBi <= 3 %, sinks <= 2 %, forward and forward + backward). For each (D, N, causal)
// of the FlashAttention-paper grid (B * N = 16k tokens, Hq * D = 2048 by default, bf16, (B, H, N, D)
// tensors) it times forward (automatic dataflow) and forward + backward (Flash, the training path; dsinks
// requested with sinks) for: none, alibi (BLOOM slopes, shape (Hq)), sinks, alibi + sinks. The variants are
// interleaved per grid point (none first), timed like bench_fwd (timing.h: L2 flushed before each call,
// events around the call, median of reps), and each row prints feature time / none time.
//
// softcap (Gemma 2's cap of 50) is timed too. --fwd-only 1 skips forward + backward (its column prints -1): the
// question of which forward kernel serves ALiBi and softcap fastest (FLATATTN_CUDA_SM90_WS=2 forces the
// warp-specialized one on Hopper; run once with and once without, docs/sm90_ws.md).
//
//   bench_features --out features.json [--d 64,128] [--n 1024,2048,4096,8192] [--reps 30] [--commit HASH]
//                  [--fwd-only 0]
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

#include "flatattn/flatattn.h"
#include "bench/gpu/bench_util.h"
#include "bench/gpu/timing.h"
#include "src/core/half.h"

namespace {

using flatattn::bench::json_str;
using flatattn::bench::ok;
using flatattn::bench::parse_list;

struct Feature {
  const char* name;
  bool alibi, sinks;
  float softcap;  ///< 0: off; Gemma 2's 50 otherwise
};
constexpr Feature kFeatures[] = {{"none", false, false, 0.f},       {"alibi", true, false, 0.f},
                                 {"sinks", false, true, 0.f},       {"alibi_sinks", true, true, 0.f},
                                 {"softcap", false, false, 50.f}};

}  // namespace

int main(int argc, char** argv) {
  std::string out = "features.json", commit = "unknown";
  std::vector<long> ds = {64, 128}, ns = {1024, 2048, 4096, 8192};
  int reps = 30, warmup = 5, fwd_only = 0;
  long width = 2048;
  if (!flatattn::bench::parse_options(argc, argv, {
      {"--out", [&](const std::string& v) { out = v; }},
      {"--d", [&](const std::string& v) { ds = parse_list(v); }},
      {"--n", [&](const std::string& v) { ns = parse_list(v); }},
      {"--reps", [&](const std::string& v) { reps = std::stoi(v); }},
      {"--width", [&](const std::string& v) { width = std::stol(v); }},
      {"--commit", [&](const std::string& v) { commit = v; }},
      {"--fwd-only", [&](const std::string& v) { fwd_only = std::stoi(v); }},
      }))
    return 2;
  flatattn::bench::Timer timer;
  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "properties");

  const long kTokens = 16384, elems = kTokens * width;
  const long hmax = width / *std::min_element(ds.begin(), ds.end());
  void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *lse, *slopes, *sinks, *dsinks;
  for (void** p : {&q, &k, &v, &o, &dout, &dq, &dk, &dv}) ok(cudaMalloc(p, elems * 2), "cudaMalloc");
  ok(cudaMalloc(&lse, kTokens * hmax * 4), "cudaMalloc(lse)");
  for (void** p : {&slopes, &sinks, &dsinks}) ok(cudaMalloc(p, hmax * 4), "cudaMalloc(per head)");
  flatattn::bench::fill_random_bf16({q, k, v, dout}, elems);

  std::ostringstream js;
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  js << "{\"device\": " << json_str(prop.name) << ", \"commit\": " << json_str(commit) << ", \"date\": "
     << json_str(date) << ", \"rows\": [\n";
  bool first = true;
  std::printf("%4s %5s %2s %3s %3s %-12s | %8s %8s | %7s %7s\n", "D", "N", "c", "B", "H", "feature", "fwd ms",
              "f+b ms", "fwd x", "f+b x");
  std::mt19937_64 rng(12345);  // the sinks' values
  std::normal_distribution<float> nd;
  for (long d : ds) {
    const long h = width / d;
    std::vector<float> sl(h), sk(h);
    for (long i = 0; i < h; ++i) {
      sl[i] = std::exp2(-8.f * float(i + 1) / float(h));  // BLOOM's slopes (Press et al. 2022, Sec. 3)
      sk[i] = nd(rng);
    }
    ok(cudaMemcpy(slopes, sl.data(), h * 4, cudaMemcpyHostToDevice), "copy slopes");
    ok(cudaMemcpy(sinks, sk.data(), h * 4, cudaMemcpyHostToDevice), "copy sinks");
    for (long n : ns) {
      const long b = std::max(1L, kTokens / n);
      for (bool causal : {false, true}) {
        using flatattn::DType;
        using flatattn::TensorView;
        auto view = [&](void* p) { return flatattn::bench::bhnd_view(p, b, n, h, d); };
        const TensorView per_head_slopes = TensorView::contiguous(slopes, DType::f32, {h}, flatattn::Device::cuda(0));
        const TensorView per_head_sinks = TensorView::contiguous(sinks, DType::f32, {h}, flatattn::Device::cuda(0));
        const TensorView per_head_dsinks = TensorView::contiguous(dsinks, DType::f32, {h}, flatattn::Device::cuda(0));
        double base_f = 0, base_fb = 0;
        for (const Feature& f : kFeatures) {
          flatattn::ForwardArgs fa;
          fa.q = view(q), fa.k = view(k), fa.v = view(v), fa.out = view(o);
          fa.lse = TensorView::strided(lse, DType::f32, {b, h, n}, {h * n, n, 1}, flatattn::Device::cuda(0));
          if (f.alibi) fa.alibi_slopes = per_head_slopes;
          if (f.sinks) fa.sinks = per_head_sinks;
          flatattn::BackwardArgs ba;
          ba.dout = view(dout), ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.lse = fa.lse;
          ba.dq = view(dq), ba.dk = view(dk), ba.dv = view(dv);
          ba.alibi_slopes = fa.alibi_slopes, ba.sinks = fa.sinks;
          if (f.sinks) ba.dsinks = per_head_dsinks;
          const flatattn::bench::FwdBwdTimes tm = flatattn::bench::time_fwd_fwdbwd(timer, fa, ba, causal, warmup, reps,
                                                                                    f.softcap, fwd_only != 0);
          const double f_ms = tm.fwd_ms, fb_ms = tm.fwdbwd_ms;
          const std::string& err = tm.err;
          if (!f.alibi && !f.sinks && f.softcap == 0.f) base_f = f_ms, base_fb = fb_ms;
          const double rf = base_f > 0 && f_ms > 0 ? f_ms / base_f : -1, rfb = base_fb > 0 && fb_ms > 0 ? fb_ms / base_fb : -1;
          std::printf("%4ld %5ld %2d %3ld %3ld %-12s | %8.3f %8.3f | %7.3f %7.3f %s\n", d, n, causal ? 1 : 0, b, h,
                      f.name, f_ms, fb_ms, rf, rfb, err.c_str());
          std::fflush(stdout);
          js << (first ? "" : ",\n") << "  {\"D\": " << d << ", \"N\": " << n << ", \"B\": " << b << ", \"H\": " << h
             << ", \"causal\": " << (causal ? "true" : "false") << ", \"feature\": " << json_str(f.name)
             << ", \"fwd_ms\": " << f_ms << ", \"fwdbwd_ms\": " << fb_ms << ", \"fwd_ratio\": " << rf
             << ", \"fwdbwd_ratio\": " << rfb << ", \"error\": " << json_str(err) << "}";
          first = false;
        }
      }
    }
  }
  js << "\n]}\n";
  std::ofstream(out) << js.str();
  for (void* p : {q, k, v, o, dout, dq, dk, dv, lse, slopes, sinks, dsinks}) cudaFree(p);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
