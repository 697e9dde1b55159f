// Backward tile tuner: times each candidate shape (tune_bwd_d*.cu) of the backward's three launches on
// the bench_bwd grid's ends (bf16, Hq = 16, B * N = 16k, N = 2k and 8k, causal and not), default and
// deterministic, and checks each against the policy table's kernel through the public API (max
// |difference| / max |reference| per gradient). Timing as bench_bwd (timing.h). Data for the bwd_tile
// table of src/cuda/policy/tile_size.h; sm80 family only (the machine's GPU must run sm_80 SASS or newer).
//
//   tune_bwd [--n 2048,8192] [--reps 20]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/gpu/timing.h"
#include "bench/gpu/tune_bwd_candidates.h"
#include "flatattn/flatattn.h"
#include "src/core/half.h"
#include "src/core/validate.h"

using flatattn::bench::ok;
namespace tune = flatattn::cuda::tune;

namespace {

std::vector<float> to_host(const void* p, long n) {
  std::vector<std::uint16_t> h(n);
  ok(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost), "copy back");
  std::vector<float> f(n);
  for (long i = 0; i < n; ++i) f[i] = flatattn::bf16_to_float(h[i]);
  return f;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& ref) {
  double m = 0, r = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - ref[i]);
    m = std::isnan(d) ? INFINITY : std::max(m, d);
    r = std::max(r, std::abs(static_cast<double>(ref[i])));
  }
  return r > 0 ? m / r : m;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> ns = {2048, 8192};
  int reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--n") {
      ns.clear();
      std::stringstream ss(v);
      std::string x;
      while (std::getline(ss, x, ',')) ns.push_back(std::stol(x));
    } else if (k == "--reps") {
      reps = std::stoi(v);
    }
  }
  flatattn::bench::Timer timer;
  const long h = 16, kTokens = 16384, dmax = 128, elems = kTokens * h * dmax;
  std::vector<std::uint16_t> host(elems + 64);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> nd;
  for (auto& x : host) x = flatattn::float_to_bf16(nd(rng));
  void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *rq, *rk, *rv, *lse, *ws, *ws_det;
  for (void** p : {&q, &k, &v, &o, &dout, &dq, &dk, &dv, &rq, &rk, &rv}) ok(cudaMalloc(p, elems * 2), "cudaMalloc");
  ok(cudaMalloc(&lse, kTokens * h * 4), "cudaMalloc(lse)");
  // Workspaces for any candidate (the largest shape: kTokens * h rows at D = dmax), default and
  // deterministic.
  using flatattn::cuda::BwdWorkspace;
  const std::size_t rows = static_cast<std::size_t>(kTokens * h);
  ok(cudaMalloc(&ws, BwdWorkspace::bytes(rows, dmax, false)), "cudaMalloc(workspace)");
  ok(cudaMalloc(&ws_det, BwdWorkspace::bytes(rows, dmax, true)), "cudaMalloc(deterministic workspace)");
  int shift = 0;
  for (void* p : {q, k, v, dout}) {
    ok(cudaMemcpy(p, host.data() + shift, elems * 2, cudaMemcpyHostToDevice), "copy");
    shift += 7;
  }
  std::printf("%4s %5s %2s | %-52s | %8s %8s %6s | %9s %9s %9s\n", "D", "N", "c", "candidate", "bwd ms", "det ms",
              "TF/s", "dq diff", "dk diff", "dv diff");
  for (int d : {64, 128}) {
    const std::vector<tune::BwdCandidate> cands = d == 64 ? tune::bwd_candidates_d64() : tune::bwd_candidates_d128();
    for (long n : ns) {
      const long b = std::max(1L, kTokens / n);
      for (bool causal : {false, true}) {
        using flatattn::DType;
        using flatattn::TensorView;
        const auto dev = flatattn::Device::cuda(0);
        auto view = [&](void* p) { return TensorView::strided(p, DType::bf16, {b, n, h, d}, {h * n * d, d, n * d, 1}, dev); };
        flatattn::ForwardArgs fa;
        fa.q = view(q), fa.k = view(k), fa.v = view(v), fa.out = view(o);
        fa.lse = TensorView::strided(lse, DType::f32, {b, h, n}, {h * n, n, 1}, dev);
        flatattn::Options opt;
        opt.causal = causal;
        opt.return_lse = true;
        opt.dataflow = flatattn::Dataflow::flash;
        flatattn::forward(fa, opt);
        flatattn::BackwardArgs ba;
        ba.dout = view(dout), ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.lse = fa.lse;
        ba.dq = view(rq), ba.dk = view(rk), ba.dv = view(rv);
        flatattn::backward(ba, opt);  // the policy table's kernel: the reference of the comparison
        ok(cudaDeviceSynchronize(), "reference backward");
        const long count = b * n * h * d;
        const std::vector<float> ref_dq = to_host(rq, count), ref_dk = to_host(rk, count), ref_dv = to_host(rv, count);
        ba.dq = view(dq), ba.dk = view(dk), ba.dv = view(dv);
        const flatattn::ValidatedBackward vb = flatattn::validate_backward(ba, opt);
        const double flops = 2.5 * 4.0 * b * h * n * n * d / (causal ? 2.0 : 1.0);
        for (const tune::BwdCandidate& c : cands) {
          flatattn::cuda::BwdLaunchArgs a;
          a.problem = &vb.problem;
          a.tensors = &vb.tensors;
          // Carved for this shape (b * h * n rows of the kernel D = d) inside the largest one.
          const std::size_t call_rows = static_cast<std::size_t>(b * h * n);
          a.ws = BwdWorkspace::carve(static_cast<unsigned char*>(ws), call_rows, d, false);
          flatattn::Problem det_problem = vb.problem;
          det_problem.deterministic = true;
          std::string err;
          double ms = -1, det_ms = -1, e[3] = {-1, -1, -1};
          try {
            c.launch(a);
            ok(cudaDeviceSynchronize(), "candidate");
            e[0] = rel_diff(to_host(dq, count), ref_dq);
            e[1] = rel_diff(to_host(dk, count), ref_dk);
            e[2] = rel_diff(to_host(dv, count), ref_dv);
            ms = timer.median_ms([&] { c.launch(a); }, 3, reps);
            flatattn::cuda::BwdLaunchArgs ad = a;
            ad.problem = &det_problem;
            ad.ws = BwdWorkspace::carve(static_cast<unsigned char*>(ws_det), call_rows, d, true);
            det_ms = timer.median_ms([&] { c.launch(ad); }, 3, reps);
          } catch (const flatattn::Error& x) {
            err = x.what();
          }
          std::printf("%4d %5ld %2d | %-52s | %8.3f %8.3f %6.1f | %9.2e %9.2e %9.2e %s\n", d, n, causal ? 1 : 0,
                      c.name.c_str(), ms, det_ms, ms > 0 ? flops / (ms * 1e-3) / 1e12 : -1.0, e[0], e[1], e[2],
                      err.c_str());
          std::fflush(stdout);
        }
      }
    }
  }
  for (void* p : {q, k, v, o, dout, dq, dk, dv, rq, rk, rv, lse, ws, ws_det}) cudaFree(p);
  return 0;
}
