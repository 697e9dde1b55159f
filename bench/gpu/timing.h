// GPU timing as triton.testing.do_bench does it (the method peers_sdpa.py uses for the peers), so ours
// and theirs are timed alike: before every call, 256 MB are zeroed (L2 flushed, as do_bench does), then
// CUDA events bracket the call alone; warm-up calls first; the median is returned.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "flatattn/flatattn.h"
#include "src/core/half.h"

namespace flatattn::bench {

inline void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(2);
  }
}

class Timer {
 public:
  Timer() {
    ok(cudaMalloc(&flush_, kFlushBytes), "cudaMalloc(flush)");
  }
  ~Timer() { cudaFree(flush_); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  /// Median milliseconds of fn() over `reps` calls after `warmup` calls.
  template <class Fn>
  double median_ms(Fn&& fn, int warmup, int reps) {
    for (int i = 0; i < warmup; ++i) fn();
    ok(cudaDeviceSynchronize(), "warm-up");
    std::vector<cudaEvent_t> ev(2 * reps);
    for (auto& e : ev) ok(cudaEventCreate(&e), "cudaEventCreate");
    for (int i = 0; i < reps; ++i) {
      ok(cudaMemsetAsync(flush_, 0, kFlushBytes), "flush L2");
      ok(cudaEventRecord(ev[2 * i]), "record");
      fn();
      ok(cudaEventRecord(ev[2 * i + 1]), "record");
    }
    ok(cudaDeviceSynchronize(), "timed runs");
    std::vector<float> ms(reps);
    for (int i = 0; i < reps; ++i) ok(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]), "elapsed");
    for (auto& e : ev) cudaEventDestroy(e);
    std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
    return ms[reps / 2];
  }

 private:
  static constexpr std::size_t kFlushBytes = std::size_t{256} << 20;
  void* flush_ = nullptr;
};

/// Median times of one call's forward alone (fa without its LSE, the automatic dataflow) and of forward +
/// backward (Flash, LSE), as bench_features and bench_bias compare them; the features stay whatever fa/ba carry.
/// err holds a refused call's message (the times stay -1).
struct FwdBwdTimes {
  double fwd_ms = -1, fwdbwd_ms = -1;
  std::string err;
};

inline FwdBwdTimes time_fwd_fwdbwd(Timer& timer, const ForwardArgs& fa, const BackwardArgs& ba, bool causal, int warmup,
                                   int reps, float softcap = 0.f, bool fwd_only = false) {
  Options fopt;  // forward alone: the automatic dataflow, no LSE
  fopt.causal = causal;
  fopt.softcap = softcap;
  ForwardArgs fa_nolse = fa;
  fa_nolse.lse = {};
  Options opt = fopt;  // forward + backward: Flash, LSE
  opt.return_lse = true;
  opt.dataflow = Dataflow::flash;
  FwdBwdTimes t;
  try {
    t.fwd_ms = timer.median_ms([&] { forward(fa_nolse, fopt); }, warmup, reps);
    if (fwd_only) return t;
    t.fwdbwd_ms = timer.median_ms(
        [&] {
          forward(fa, opt);
          backward(ba, opt);
        },
        warmup, reps);
  } catch (const Error& e) {
    t.err = e.what();
  }
  return t;
}

/// The benches' inputs: `elems` bf16 values N(0, 1) drawn once on the host (seed 12345) and copied into each
/// device buffer from a window 7 elements further along than the previous one's, so q, k, v, dO differ. Returns
/// the host draw (elems + 64 values) for callers that fill more from it.
inline std::vector<std::uint16_t> fill_random_bf16(std::initializer_list<void*> buffers, long elems) {
  std::vector<std::uint16_t> host(elems + 64);
  std::mt19937_64 rng(12345);
  std::normal_distribution<float> nd;
  for (auto& x : host) x = float_to_bf16(nd(rng));
  int shift = 0;
  for (void* p : buffers) {
    ok(cudaMemcpy(p, host.data() + shift, elems * 2, cudaMemcpyHostToDevice), "copy");
    shift += 7;
  }
  return host;
}

}  // namespace flatattn::bench
