// Micro-bench of the bf16 (or, with --dtype f32, fp32) CPU forward (issue 21) at the shapes: median ms
// and GFLOP/s per shape, the automatic plan and, with --plans, alternative Flash / FLAT tiles. The product path
// is the one FLATATTN_CPU_MATMUL selects (auto: AMX for bf16; fp32 inputs take the exact fp32 path). Not a test;
// torch comparisons: bench/cpu/peers_torch_cpu.py.
//
//   bench_cpu_bf16 [--shapes gpt2,gpt2_causal,llama4k,n16k,n16k_full] [--threads 1] [--reps 5]
//                  [--plans flash:96x256,flat:64,...] [--backward] [--cpu-time] [--dtype bf16|f32]
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/cpu/cpu_shapes.h"
#include "flatattn/attention.h"
#include "src/core/half.h"
#include "src/core/validate.h"
#include "src/cpu/engine.h"
#include "src/cpu/policy.h"

using namespace flatattn;

namespace {

double cpu_seconds() {  // this process's CPU time: on a shared machine, unlike wall time, it leaves out the
  timespec ts;          // time other processes held our cores (with --cpu-time)
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

bool g_cpu_time = false;

template <typename F>
double median_s(int reps, F f) {
  f();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    if (g_cpu_time) {
      const double c0 = cpu_seconds();
      f();
      t.push_back(cpu_seconds() - c0);
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> shapes = {"gpt2", "gpt2_causal", "llama4k", "n16k"}, plans;
  int threads = 1, reps = 5;
  bool backward = false;
  DType dtype = DType::bf16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shapes" && i + 1 < argc) shapes = bench::split_list(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--plans" && i + 1 < argc) plans = bench::split_list(argv[++i]);
    else if (a == "--backward") backward = true;
    else if (a == "--cpu-time") g_cpu_time = true;  // process CPU time instead of wall time (for --threads 1)
    else if (a == "--dtype" && i + 1 < argc) dtype = std::string(argv[++i]) == "f32" ? DType::f32 : DType::bf16;
    else {
      std::fprintf(stderr, "usage: %s [--shapes a,b] [--threads 1] [--reps 5] [--plans flash:96x256,flat:64] [--backward]\n", argv[0]);
      return 2;
    }
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const std::string& sname : shapes) {
    const bench::CpuShape* sh = bench::find_cpu_shape(sname);
    if (!sh) {
      std::fprintf(stderr, "unknown shape %s\n", sname.c_str());
      return 2;
    }
    const std::size_t nq = sh->b * sh->n * sh->hq * sh->d, nkv = sh->b * sh->n * sh->hkv * sh->d;
    // Element storage: bf16 (2 bytes) or f32 (4 bytes) in float-aligned buffers.
    const bool f32 = dtype == DType::f32;
    auto buf = [&](std::size_t n) { return std::vector<float>(f32 ? n : (n + 1) / 2); };
    std::vector<float> q = buf(nq), k = buf(nkv), v = buf(nkv), o = buf(nq), dout = buf(nq), dq = buf(nq),
                       dk = buf(nkv), dv = buf(nkv);
    for (auto* x : {&q, &k, &v, &dout}) {
      const std::size_t n = x == &q || x == &dout ? nq : nkv;
      for (std::size_t e = 0; e < n; ++e) {
        if (f32) (*x)[e] = nd(rng);
        else reinterpret_cast<std::uint16_t*>(x->data())[e] = float_to_bf16(nd(rng));
      }
    }
    std::vector<float> lse(sh->b * sh->hq * sh->n);
    ForwardArgs fa;
    fa.q = TensorView::contiguous(q.data(), dtype, {sh->b, sh->n, sh->hq, sh->d});
    fa.k = TensorView::contiguous(k.data(), dtype, {sh->b, sh->n, sh->hkv, sh->d});
    fa.v = TensorView::contiguous(v.data(), dtype, {sh->b, sh->n, sh->hkv, sh->d});
    fa.out = TensorView::contiguous(o.data(), dtype, {sh->b, sh->n, sh->hq, sh->d});
    fa.lse = TensorView::contiguous(lse.data(), DType::f32, {sh->b, sh->hq, sh->n});
    Options opt;
    opt.causal = sh->causal;
    opt.num_threads = threads;
    opt.return_lse = true;
    const double flops = forward_flops(sh->b, sh->n, sh->n, sh->hq, sh->d, opt);
    Report r;
    const double t = median_s(reps, [&] { r = forward(fa, opt); });
    std::printf("%-12s t%d %-40s %9.2f ms %7.1f GFLOP/s\n", sh->name, threads, r.kernel.c_str(), t * 1e3,
                flops / t * 1e-9);
    std::fflush(stdout);
    if (!plans.empty()) {
      const ValidatedForward vf = validate_forward(fa, opt);
      for (const std::string& ps : plans) {
        cpu::ForwardPlan plan;
        const auto colon = ps.find(':');
        const std::string df = ps.substr(0, colon), dims = ps.substr(colon + 1);
        if (df == "flat") {
          plan = {Dataflow::flat, std::atoi(dims.c_str()), 0};
        } else {
          const auto x = dims.find('x');
          plan = {Dataflow::flash, std::atoi(dims.substr(0, x).c_str()), std::atoi(dims.substr(x + 1).c_str())};
        }
        const double tp = median_s(reps, [&] { r = cpu::run_forward(vf.problem, vf.tensors, plan); });
        std::printf("%-12s t%d %-40s %9.2f ms %7.1f GFLOP/s\n", "  plan", threads, r.kernel.c_str(), tp * 1e3,
                    flops / tp * 1e-9);
        std::fflush(stdout);
      }
    }
    if (backward) {
      BackwardArgs ba;
      ba.dout = TensorView::contiguous(dout.data(), dtype, {sh->b, sh->n, sh->hq, sh->d});
      ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.lse = fa.lse;
      ba.dq = TensorView::contiguous(dq.data(), dtype, {sh->b, sh->n, sh->hq, sh->d});
      ba.dk = TensorView::contiguous(dk.data(), dtype, {sh->b, sh->n, sh->hkv, sh->d});
      ba.dv = TensorView::contiguous(dv.data(), dtype, {sh->b, sh->n, sh->hkv, sh->d});
      forward(fa, opt);
      const double tb = median_s(reps, [&] { r = flatattn::backward(ba, opt); });
      std::printf("%-12s t%d %-40s %9.2f ms %7.1f GFLOP/s (2.5x)\n", "  bwd", threads, r.kernel.c_str(), tb * 1e3,
                  2.5 * flops / tb * 1e-9);
    }
  }
  return 0;
}
