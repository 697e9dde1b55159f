// f16 forward + backward on the CPU (issue 21): the split path (f16 as 2 bf16 pieces on the bf16 matrix units,
// FLATATTN_CPU_MATMUL unset = auto, or the value of --split) against the exact fp32 path (FLATATTN_CPU_MATMUL=fp32,
// set around its calls: the engine reads it on every call). Per cell the two alternate round by round (split fwd,
// split bwd, fp32 fwd, fp32 bwd, ...) after one untimed round; medians of --reps rounds, wall time, ms. Also the
// largest |dq, dk, dv (split) - (fp32 path)| in f16 ulps of the largest |gradient| (the two paths sum the same
// exact products in another order; P and dS carried to 16 bits on the split path). Not a test.
//
//   bench_cpu_f16_bwd [--shapes gpt2,gpt2_causal,llama4k] [--threads 1,2] [--reps 3] [--split amx]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/cpu/cpu_shapes.h"
#include "flatattn/attention.h"
#include "src/core/half.h"

using namespace flatattn;

namespace {

double ms_of(const auto& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Largest |a - b| over f16 arrays, in f16 ulps of max |b|.
double ulps_apart(const std::vector<std::uint16_t>& a, const std::vector<std::uint16_t>& b) {
  double top = 0, worst = 0;
  for (std::uint16_t x : b) top = std::max(top, double(std::abs(f16_to_float(x))));
  const double ulp = std::ldexp(1.0, std::max(std::ilogb(top == 0 ? 0x1p-24 : top), -14) - 10);
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(double(f16_to_float(a[i])) - f16_to_float(b[i])) / ulp);
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> shapes = {"gpt2", "gpt2_causal", "llama4k"}, threads = {"1", "2"};
  int reps = 3;
  std::string split_env;  // "" = auto
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shapes" && i + 1 < argc) shapes = bench::split_list(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = bench::split_list(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--split" && i + 1 < argc) split_env = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--shapes a,b] [--threads 1,2] [--reps 3] [--split amx|avx512bf16]\n", argv[0]);
      return 2;
    }
  }
  std::printf("shape thr | split fwd bwd total ms | fp32 fwd bwd total ms | total x | dq dk dv ulps apart | kernels\n");
  for (const std::string& sname : shapes) {
    const bench::CpuShape* sh = bench::find_cpu_shape(sname);
    if (!sh) {
      std::fprintf(stderr, "unknown shape %s\n", sname.c_str());
      return 2;
    }
    const std::size_t nq = sh->b * sh->n * sh->hq * sh->d, nkv = sh->b * sh->n * sh->hkv * sh->d;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<std::uint16_t> q(nq), k(nkv), v(nkv), o(nq), dout(nq);
    for (auto* x : {&q, &k, &v, &dout})
      for (auto& e : *x) e = float_to_f16(nd(rng));
    std::vector<float> lse(sh->b * sh->hq * sh->n);
    std::vector<std::uint16_t> g[2][3];  // [split, fp32][dq, dk, dv]
    for (auto& gs : g) gs[0].resize(nq), gs[1].resize(nkv), gs[2].resize(nkv);
    const auto view = [&](std::uint16_t* p, std::int64_t h) { return TensorView::contiguous(p, DType::f16, {sh->b, sh->n, h, sh->d}); };
    ForwardArgs fa;
    fa.q = view(q.data(), sh->hq);
    fa.k = view(k.data(), sh->hkv);
    fa.v = view(v.data(), sh->hkv);
    fa.out = view(o.data(), sh->hq);
    fa.lse = TensorView::contiguous(lse.data(), DType::f32, {sh->b, sh->hq, sh->n});
    for (const std::string& t : threads) {
      Options opt;
      opt.causal = sh->causal;
      opt.num_threads = std::atoi(t.c_str());
      opt.return_lse = true;
      std::vector<double> ms[2][2];  // [split, fp32][fwd, bwd]
      std::string kernel[2][2];
      for (int r = 0; r <= reps; ++r)
        for (int path = 0; path < 2; ++path) {
          if (path == 1) {
            setenv("FLATATTN_CPU_MATMUL", "fp32", 1);
          } else if (split_env.empty()) {
            unsetenv("FLATATTN_CPU_MATMUL");
          } else {
            setenv("FLATATTN_CPU_MATMUL", split_env.c_str(), 1);
          }
          BackwardArgs ba;
          ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.lse = fa.lse;
          ba.dout = view(dout.data(), sh->hq);
          ba.dq = view(g[path][0].data(), sh->hq);
          ba.dk = view(g[path][1].data(), sh->hkv);
          ba.dv = view(g[path][2].data(), sh->hkv);
          Report rf, rb;
          const double tf = ms_of([&] { rf = forward(fa, opt); });
          const double tb = ms_of([&] { rb = backward(ba, opt); });
          kernel[path][0] = rf.kernel, kernel[path][1] = rb.kernel;
          if (r > 0) ms[path][0].push_back(tf), ms[path][1].push_back(tb);
        }
      unsetenv("FLATATTN_CPU_MATMUL");
      double m[2][2];
      for (int p = 0; p < 2; ++p)
        for (int s = 0; s < 2; ++s) m[p][s] = median(ms[p][s]);
      std::printf("%s %s | %.1f %.1f %.1f | %.1f %.1f %.1f | %.2f | %.2f %.2f %.2f | %s %s / %s %s\n", sh->name,
                  t.c_str(), m[0][0], m[0][1], m[0][0] + m[0][1], m[1][0], m[1][1], m[1][0] + m[1][1],
                  (m[1][0] + m[1][1]) / (m[0][0] + m[0][1]), ulps_apart(g[0][0], g[1][0]), ulps_apart(g[0][1], g[1][1]),
                  ulps_apart(g[0][2], g[1][2]), kernel[0][0].c_str(), kernel[0][1].c_str(), kernel[1][0].c_str(),
                  kernel[1][1].c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
