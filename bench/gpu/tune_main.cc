// Tile-size candidates for the policy table (src/cuda/policy/tile_size.h), timed on the GPU in the
// same run as the main benchmark: each candidate is the library's kernel template with another
// compile-time shape, launched on FlashAttention-paper shapes (bf16, B*N = 16k, Hq*D = 2048), timed
// like bench_fwd (timing.h), and checked against the library's own output (max |diff|) so a
// fast-but-wrong candidate shows.
//
//   tune_fwd --out tune.json [--n 1024,4096,16384] [--reps 20] [--only flash|flat|sm90]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "src/core/half.h"
#include "src/core/validate.h"
#include "bench/gpu/bench_util.h"
#include "bench/gpu/timing.h"
#include "bench/gpu/tune_candidates.h"
#include "flatattn/flatattn.h"

using namespace flatattn;
using namespace flatattn::cuda;
using namespace flatattn::cuda::tune;

using flatattn::bench::ok;
using flatattn::bench::parse_list;

int main(int argc, char** argv) {
  std::string out = "tune.json";
  std::vector<long> ns = {1024, 4096, 16384};
  int reps = 20;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--out") out = v;
    else if (k == "--n") ns = parse_list(v);
    else if (k == "--reps") reps = std::stoi(v);
    else if (k == "--only") only = v;
  }
  const long kTokens = 16384, kWidth = 2048, elems = kTokens * kWidth;
  std::vector<std::uint16_t> host(elems);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> nd;
  for (auto& x : host) x = float_to_bf16(nd(rng));
  void *q, *k, *v, *o, *ref;
  for (void** p : {&q, &k, &v, &o, &ref}) ok(cudaMalloc(p, elems * 2), "cudaMalloc");
  ok(cudaMemcpy(q, host.data(), elems * 2, cudaMemcpyHostToDevice), "copy");
  ok(cudaMemcpy(k, host.data() + 5, (elems - 5) * 2, cudaMemcpyHostToDevice), "copy");
  ok(cudaMemcpy(v, host.data() + 11, (elems - 11) * 2, cudaMemcpyHostToDevice), "copy");
  std::vector<std::uint16_t> h_out(elems), h_ref(elems);
  flatattn::bench::Timer timer;

  std::ostringstream js;
  js << "{\"rows\": [\n";
  bool first = true;
  std::vector<long> extra = {128, 256};
  std::vector<Candidate> all;
  for (auto* group : {candidates_d64, candidates_d128, candidates_d256, candidates_flat
#ifdef FLATATTN_TUNE_SM90
                      , candidates_sm90
#endif
       })
    for (Candidate& c : group())
      if (only.empty() || c.dataflow == only) all.push_back(std::move(c));
  for (const Candidate& c : all) {
    const long d = c.d, h = kWidth / d;
    std::vector<long> grid = c.dataflow == "flat" ? extra : ns;
    for (long n : grid) {
      if (n > c.cap_n) continue;
      const long b = std::max(1L, kTokens / n);
      for (bool causal : {false, true}) {
        auto view = [&](void* p) {
          return TensorView::strided(p, DType::bf16, {b, n, h, d}, {h * n * d, d, n * d, 1}, Device::cuda(0));
        };
        ForwardArgs a{view(q), view(k), view(v), view(ref), {}, std::nullopt};
        Options opt;
        opt.causal = causal;
        opt.dataflow = Dataflow::flash;
        forward(a, opt);  // the library's kernel: the reference output
        a.out = view(o);
        const ValidatedForward vf = validate_forward(a, opt);
        LaunchArgs la;
        la.problem = &vf.problem;
        la.tensors = &vf.tensors;
        const double ms = timer.median_ms([&] { c.launch(la); }, 3, reps);
        const double flops = 4.0 * b * h * n * n * d / (causal ? 2.0 : 1.0);
        const double tf = flops / (ms * 1e-3) / 1e12;
        const long cnt = b * n * h * d;
        ok(cudaMemcpy(h_out.data(), o, cnt * 2, cudaMemcpyDeviceToHost), "copy back");
        ok(cudaMemcpy(h_ref.data(), ref, cnt * 2, cudaMemcpyDeviceToHost), "copy back");
        double maxdiff = 0;
        for (long i = 0; i < cnt; ++i) {
          const double dd = std::fabs(bf16_to_float(h_out[i]) - bf16_to_float(h_ref[i]));
          maxdiff = std::isnan(dd) ? INFINITY : std::max(maxdiff, dd);
        }
        std::printf("%-5s D=%-3ld %-22s N=%-5ld causal=%d  %6.1f TFLOP/s  max|diff vs library|=%.3g\n",
                    c.dataflow.c_str(), d, c.shape.c_str(), n, causal ? 1 : 0, tf, maxdiff);
        std::fflush(stdout);
        js << (first ? "" : ",\n") << "  {\"dataflow\": \"" << c.dataflow << "\", \"D\": " << d << ", \"shape\": \""
           << c.shape << "\", \"N\": " << n << ", \"causal\": " << (causal ? "true" : "false") << ", \"tflops\": " << tf
           << ", \"maxdiff\": " << (std::isinf(maxdiff) ? 1e30 : maxdiff) << "}";
        first = false;
      }
    }
  }
  js << "\n]}\n";
  std::ofstream(out) << js.str();
  return 0;
}
