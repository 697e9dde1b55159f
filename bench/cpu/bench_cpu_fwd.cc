// Micro-bench of the CPU forward: GFLOP/s of Flash and FLAT (and automatic) over N for a GPT-2 shaped
// problem (B = 1, Hq = 12, D = 64 by default, f32, causal and not), next to this machine's SGEMM rate
// measured in the same run. With --sweep it also times alternative tiles (the evidence behind the table
// in src/cpu/policy.h). Not a test: the official table comes from `flatattn bench`.
//
//   bench_cpu_fwd [--n 1024,4096,16384] [--d 64] [--hq 12] [--threads 0] [--reps 5] [--sweep] [--backward]
// --backward also times the backward pass (FLOPs counted as 2.5x the forward's, as FlashAttention-2 does).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "flatattn/attention.h"
#include "src/core/validate.h"
#include "src/cpu/engine.h"
#include "src/cpu/gemm_rate.h"
#include "src/cpu/policy.h"

using namespace flatattn;

namespace {

struct Args {
  std::vector<std::int64_t> ns = {1024, 4096, 16384};
  std::int64_t d = 64, hq = 12;
  int threads = 0, reps = 5;
  bool sweep = false;
  bool backward = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--n")) {
      a.ns.clear();
      std::stringstream s(next());
      for (std::string x; std::getline(s, x, ',');) a.ns.push_back(std::stoll(x));
    } else if (!std::strcmp(argv[i], "--d")) {
      a.d = std::stoll(next());
    } else if (!std::strcmp(argv[i], "--hq")) {
      a.hq = std::stoll(next());
    } else if (!std::strcmp(argv[i], "--threads")) {
      a.threads = std::atoi(next());
    } else if (!std::strcmp(argv[i], "--reps")) {
      a.reps = std::atoi(next());
    } else if (!std::strcmp(argv[i], "--sweep")) {
      a.sweep = true;
    } else if (!std::strcmp(argv[i], "--backward")) {
      a.backward = true;
    } else {
      std::fprintf(stderr, "usage: %s [--n 1024,4096] [--d 64] [--hq 12] [--threads 0] [--reps 5] [--sweep] [--backward]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return a;
}

struct Timing {
  double median, best;  ///< seconds
};

/// Median and best of `reps` runs of f after one warm-up. The best run is the one least disturbed by
/// other work on a shared machine; both are printed.
template <typename F>
Timing time_runs(int reps, F f) {
  f();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t[0]};
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  const double sgemm = cpu::sgemm_gflops(2048, threads);
  std::printf("threads %d, L2 %zu KiB, SGEMM (%s, n=2048) %.1f GFLOP/s\n", threads, cpu::l2_cache_bytes() >> 10,
              cpu::sgemm_library().c_str(), sgemm);
  std::printf("%7s %6s %-9s %-34s %10s %9s %7s %9s %7s\n", "N", "causal", "dataflow", "kernel", "median ms",
              "GFLOP/s", "xSGEMM", "best", "xSGEMM");
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (std::int64_t n : a.ns) {
    const std::size_t count = static_cast<std::size_t>(n * a.hq * a.d);
    std::vector<float> q(count), k(count), v(count), o(count);
    for (auto* x : {&q, &k, &v})
      for (float& e : *x) e = nd(rng);
    ForwardArgs fa;
    fa.q = TensorView::contiguous(q.data(), DType::f32, {1, n, a.hq, a.d});
    fa.k = TensorView::contiguous(k.data(), DType::f32, {1, n, a.hq, a.d});
    fa.v = TensorView::contiguous(v.data(), DType::f32, {1, n, a.hq, a.d});
    fa.out = TensorView::contiguous(o.data(), DType::f32, {1, n, a.hq, a.d});
    for (bool causal : {false, true}) {
      Options opt;
      opt.causal = causal;
      opt.num_threads = a.threads;
      const double flops = forward_flops(1, n, n, a.hq, a.d, opt);
      auto row = [&](const char* df, const Report& r, Timing t) {
        const double g = flops / t.median * 1e-9, gb = flops / t.best * 1e-9;
        std::printf("%7lld %6s %-9s %-34s %10.2f %9.1f %7.2f %9.1f %7.2f\n", static_cast<long long>(n),
                    causal ? "yes" : "no", df, r.kernel.c_str(), t.median * 1e3, g, g / sgemm, gb, gb / sgemm);
        std::fflush(stdout);
      };
      for (Dataflow df : {Dataflow::flash, Dataflow::flat, Dataflow::automatic}) {
        opt.dataflow = df;
        Report r;
        const Timing s = time_runs(a.reps, [&] { r = forward(fa, opt); });
        row(std::string(name(df)).c_str(), r, s);
      }
      if (a.backward) {
        std::vector<float> dout(count), dq(count), dk(count), dv(count), lse(static_cast<std::size_t>(a.hq * n));
        for (float& e : dout) e = nd(rng);
        Options fo = opt;
        fo.dataflow = Dataflow::automatic;
        fo.return_lse = true;
        ForwardArgs f2 = fa;
        f2.lse = TensorView::contiguous(lse.data(), DType::f32, {1, a.hq, n});
        forward(f2, fo);
        BackwardArgs ba;
        ba.dout = TensorView::contiguous(dout.data(), DType::f32, {1, n, a.hq, a.d});
        ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.lse = f2.lse;
        ba.dq = TensorView::contiguous(dq.data(), DType::f32, {1, n, a.hq, a.d});
        ba.dk = TensorView::contiguous(dk.data(), DType::f32, {1, n, a.hq, a.d});
        ba.dv = TensorView::contiguous(dv.data(), DType::f32, {1, n, a.hq, a.d});
        Report r;
        const Timing t = time_runs(a.reps, [&] { r = backward(ba, opt); });
        const double g = 2.5 * flops / t.median * 1e-9, gb = 2.5 * flops / t.best * 1e-9;
        std::printf("%7lld %6s %-9s %-34s %10.2f %9.1f %7.2f %9.1f %7.2f\n", static_cast<long long>(n),
                    causal ? "yes" : "no", "backward", r.kernel.c_str(), t.median * 1e3, g, g / sgemm, gb, gb / sgemm);
        std::fflush(stdout);
        if (a.sweep) {
          const ValidatedBackward vb = validate_backward(ba, opt);
          for (const cpu::BackwardPlan& plan : {cpu::BackwardPlan{48, 128, 96}, cpu::BackwardPlan{96, 128, 96},
                                                cpu::BackwardPlan{48, 256, 192}, cpu::BackwardPlan{96, 256, 192},
                                                cpu::BackwardPlan{192, 256, 192}, cpu::BackwardPlan{96, 256, 288}}) {
            const Timing ts = time_runs(a.reps, [&] { r = cpu::run_backward(vb.problem, vb.tensors, plan); });
            const double gs = 2.5 * flops / ts.median * 1e-9;
            std::printf("%7lld %6s %-9s %-34s %10.2f %9.1f %7.2f\n", static_cast<long long>(n), causal ? "yes" : "no",
                        "  sweep", r.kernel.c_str(), ts.median * 1e3, gs, gs / sgemm);
            std::fflush(stdout);
          }
        }
      }
      if (!a.sweep || a.backward) continue;  // --sweep with --backward sweeps backward plans only
      opt.dataflow = Dataflow::automatic;
      const ValidatedForward vf = validate_forward(fa, opt);
      std::vector<cpu::ForwardPlan> plans;
      for (int bm : {48, 96, 192})
        for (int bn : {128, 256, 512}) plans.push_back({Dataflow::flash, bm, bn});
      for (int r : {12, 24, 48, 96, 192}) plans.push_back({Dataflow::flat, r, 0});
      for (const cpu::ForwardPlan& plan : plans) {
        Report r;
        const Timing s = time_runs(a.reps, [&] { r = cpu::run_forward(vf.problem, vf.tensors, plan); });
        row("  sweep", r, s);
      }
    }
  }
  std::printf("SGEMM again at the end: %.1f GFLOP/s\n", cpu::sgemm_gflops(2048, threads));
  return 0;
}
