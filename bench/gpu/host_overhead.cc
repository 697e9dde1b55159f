// Host overhead of one call: the wall time of flatattn::forward() / backward() themselves, from the C++
// entry (validation, dispatch, instance choice) to the kernel launches returning, for a problem so
// small (B = 1, N = 128, H = 1, D = 64, bf16) that the GPU never holds the host up. Calls go to a
// non-blocking stream and are not waited for; the stream is synchronized every --sync-every calls
// (outside the timed calls) so the launch queue stays short. Reports the median (and p10/p90/mean) over
// --calls calls after a warm-up, next to two baselines: one cudaMemsetAsync (the runtime's own cost of
// one asynchronous call) and one launch of an empty kernel with FwdParams-sized arguments
// (bench/gpu/empty_launch.cu: the floor of any launch). Uses the public API only, so it builds against any version of the library.
// Where CUPTI is built in (bench/gpu/cupti_probe.h), a second pass over the same calls with CUPTI's
// runtime-API callbacks on splits each call: the time from the C++ entry to the entry of its first kernel
// launch ("to launch"), the time inside CUDA runtime calls, and the rest ("own": the library's code
// outside the runtime). The first pass runs without callbacks, so its totals compare with earlier runs.
//
//   host_overhead [--out host_overhead.json] [--calls 20000] [--sync-every 1000] [--n 128] [--d 64]
//                 [--commit HASH]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "flatattn/flatattn.h"
#include "bench/gpu/bench_util.h"
#include "bench/gpu/cupti_probe.h"
#include "bench/gpu/timing.h"

int launch_empty_kernel(cudaStream_t stream);  // bench/gpu/empty_launch.cu

namespace {

using flatattn::bench::json_str;
using flatattn::bench::ok;

struct Row {
  std::string name, kernel, error;
  double median_us = -1, p10_us = -1, p90_us = -1, mean_us = -1;
  // The CUPTI pass (-1 without it): medians of the entry-to-first-launch time, of the time inside CUDA
  // runtime calls and of the call's time outside them; the runtime calls and launches of one call.
  double to_launch_us = -1, in_runtime_us = -1, own_us = -1;
  int api_calls = -1, launches = -1;
};

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  auto it = v.begin() + static_cast<std::ptrdiff_t>((v.size() - 1) / 2);
  std::nth_element(v.begin(), it, v.end());
  return *it;
}

/// The CUPTI pass over `call` (same warm-up and synchronization as time_calls), filling r's split.
void split_calls(Row& r, const std::function<std::string()>& call, cudaStream_t stream, int calls, int sync_every) {
  if (!r.error.empty()) return;
  for (int i = 0; i < std::max(1, calls / 10); ++i) {
    call();
    if ((i + 1) % sync_every == 0) ok(cudaStreamSynchronize(stream), "synchronize");
  }
  ok(cudaStreamSynchronize(stream), "synchronize");
  std::vector<double> to_launch, inside, own;
  flatattn::bench::ProbeReading last;
  for (int i = 0; i < calls; ++i) {
    flatattn::bench::probe_reset();
    const auto t0 = flatattn::bench::Clock::now();
    call();
    const auto t1 = flatattn::bench::Clock::now();
    last = flatattn::bench::probe_read();
    const double total = std::chrono::duration<double, std::micro>(t1 - t0).count();
    if (last.launches > 0)
      to_launch.push_back(std::chrono::duration<double, std::micro>(last.first_launch - t0).count());
    inside.push_back(last.inside_us);
    own.push_back(total - last.inside_us);
    if ((i + 1) % sync_every == 0) {
      flatattn::bench::probe_reset();
      ok(cudaStreamSynchronize(stream), "synchronize");
    }
  }
  flatattn::bench::probe_reset();
  ok(cudaStreamSynchronize(stream), "synchronize");
  r.to_launch_us = median(to_launch);
  r.in_runtime_us = median(inside);
  r.own_us = median(own);
  r.api_calls = last.api_calls;
  r.launches = last.launches;
}

/// Times `call` `calls` times (after `calls / 10` untimed warm-up calls), synchronizing `stream` every
/// `sync_every` calls outside the timed region. `call` returns the kernel name it reports ("" if none).
Row time_calls(const std::string& name, const std::function<std::string()>& call, cudaStream_t stream, int calls,
               int sync_every) {
  Row r;
  r.name = name;
  try {
    for (int i = 0; i < std::max(1, calls / 10); ++i) {
      r.kernel = call();
      if ((i + 1) % sync_every == 0) ok(cudaStreamSynchronize(stream), "synchronize");
    }
    ok(cudaStreamSynchronize(stream), "synchronize");
    std::vector<double> us(static_cast<std::size_t>(calls));
    for (int i = 0; i < calls; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      call();
      const auto t1 = std::chrono::steady_clock::now();
      us[static_cast<std::size_t>(i)] = std::chrono::duration<double, std::micro>(t1 - t0).count();
      if ((i + 1) % sync_every == 0) ok(cudaStreamSynchronize(stream), "synchronize");
    }
    ok(cudaStreamSynchronize(stream), "synchronize");
    double sum = 0;
    for (double x : us) sum += x;
    r.mean_us = sum / calls;
    auto at = [&](double q) {
      auto it = us.begin() + static_cast<std::ptrdiff_t>(q * (calls - 1));
      std::nth_element(us.begin(), it, us.end());
      return *it;
    };
    r.median_us = at(0.5);
    r.p10_us = at(0.1);
    r.p90_us = at(0.9);
  } catch (const flatattn::Error& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "host_overhead.json", commit = "unknown";
  int calls = 20000, sync_every = 1000;
  long n = 128, d = 64;
  if (!flatattn::bench::parse_options(argc, argv, {
      {"--out", [&](const std::string& v) { out = v; }},
      {"--commit", [&](const std::string& v) { commit = v; }},
      {"--calls", [&](const std::string& v) { calls = std::max(1, std::stoi(v)); }},
      {"--sync-every", [&](const std::string& v) { sync_every = std::max(1, std::stoi(v)); }},
      {"--n", [&](const std::string& v) { n = std::stol(v); }},
      {"--d", [&](const std::string& v) { d = std::stol(v); }},
      }))
    return 2;
  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "properties");
  ok(cudaSetDevice(0), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  const flatattn::Stream st{stream};

  // B = 1, H = 1: (1, N, 1, D) bf16 tensors, zero-filled (any finite values do); lse (1, 1, N) f32.
  const long b = 1, h = 1, elems = b * n * h * d;
  void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *lse;
  for (void** p : {&q, &k, &v, &o, &dout, &dq, &dk, &dv}) {
    ok(cudaMalloc(p, elems * 2), "cudaMalloc");
    ok(cudaMemset(*p, 0, elems * 2), "cudaMemset");
  }
  ok(cudaMalloc(&lse, b * h * n * 4), "cudaMalloc");
  ok(cudaMemset(lse, 0, b * h * n * 4), "cudaMemset");
  auto view = [&](void* p) { return flatattn::bench::bhnd_view(p, b, n, h, d); };
  const flatattn::TensorView lse_view =
      flatattn::TensorView::strided(lse, flatattn::DType::f32, {b, h, n}, {h * n, n, 1}, flatattn::Device::cuda(0));

  flatattn::ForwardArgs fa;
  fa.q = view(q);
  fa.k = view(k);
  fa.v = view(v);
  fa.out = view(o);
  flatattn::ForwardArgs fa_lse = fa;
  fa_lse.lse = lse_view;
  flatattn::BackwardArgs ba;
  ba.dout = view(dout);
  ba.q = view(q);
  ba.k = view(k);
  ba.v = view(v);
  ba.out = view(o);
  ba.lse = lse_view;
  ba.dq = view(dq);
  ba.dk = view(dk);
  ba.dv = view(dv);

  flatattn::Options flash, automatic, with_lse, deterministic;
  flash.dataflow = flatattn::Dataflow::flash;
  with_lse.return_lse = true;
  deterministic.deterministic = true;

  std::vector<Row> rows;
  std::vector<std::function<std::string()>> bodies;
  auto add = [&](const std::string& name, std::function<std::string()> call) {
    rows.push_back(time_calls(name, call, stream, calls, sync_every));
    bodies.push_back(std::move(call));
  };
  add("cudaMemsetAsync (baseline)", [&] {
    ok(cudaMemsetAsync(o, 0, 16, stream), "cudaMemsetAsync");
    return std::string();
  });
  add("empty kernel launch (baseline)", [&] {
    ok(static_cast<cudaError_t>(launch_empty_kernel(stream)), "empty kernel launch");
    return std::string();
  });
  auto fwd = [&](const flatattn::ForwardArgs& a, const flatattn::Options& opt) {
    return [&a, &opt, &st] { return flatattn::forward(a, opt, st).kernel; };
  };
  auto bwd = [&](const flatattn::Options& opt) {
    return [&ba, &opt, &st] { return flatattn::backward(ba, opt, st).kernel; };
  };
  add("forward flash", fwd(fa, flash));
  add("forward auto", fwd(fa, automatic));
  add("forward auto + lse", fwd(fa_lse, with_lse));
  add("backward", bwd(automatic));
  add("backward deterministic", bwd(deterministic));

  const bool split = flatattn::bench::probe_start();
  if (split) {
    for (std::size_t i = 0; i < rows.size(); ++i) split_calls(rows[i], bodies[i], stream, calls, sync_every);
    flatattn::bench::probe_stop();
  }

  std::printf("host time per call, B=1 N=%ld H=1 D=%ld bf16, %d calls (%s)\n", n, d, calls, prop.name);
  std::printf("%-28s %9s %9s %9s %9s %10s %10s %9s %5s  %s\n", "call", "median us", "p10 us", "p90 us", "mean us",
              "to launch", "in runtime", "own us", "calls", "kernel");
  for (const Row& r : rows) {
    if (!r.error.empty()) {
      std::printf("%-28s error: %s\n", r.name.c_str(), r.error.c_str());
      continue;
    }
    std::printf("%-28s %9.2f %9.2f %9.2f %9.2f %10.2f %10.2f %9.2f %5d  %s\n", r.name.c_str(), r.median_us, r.p10_us,
                r.p90_us, r.mean_us, r.to_launch_us, r.in_runtime_us, r.own_us, r.api_calls, r.kernel.c_str());
  }

  std::ostringstream js;
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  js << "{\"device\": " << json_str(prop.name) << ", \"commit\": " << json_str(commit) << ", \"date\": "
     << json_str(date) << ", \"B\": " << b << ", \"N\": " << n << ", \"H\": " << h << ", \"D\": " << d
     << ", \"dtype\": \"bf16\", \"cupti_split\": " << (split ? "true" : "false") << ", \"calls\": " << calls << ", \"sync_every\": " << sync_every << ", \"rows\": [\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    js << (i ? ",\n" : "") << "  {\"call\": " << json_str(r.name) << ", \"kernel\": " << json_str(r.kernel)
       << ", \"median_us\": " << r.median_us << ", \"p10_us\": " << r.p10_us << ", \"p90_us\": " << r.p90_us
       << ", \"mean_us\": " << r.mean_us << ", \"to_launch_us\": " << r.to_launch_us
       << ", \"in_runtime_us\": " << r.in_runtime_us << ", \"own_us\": " << r.own_us
       << ", \"runtime_calls\": " << r.api_calls << ", \"launches\": " << r.launches
       << ", \"error\": " << json_str(r.error) << "}";
  }
  js << "\n]}\n";
  std::ofstream(out) << js.str();
  for (void* p : {q, k, v, o, dout, dq, dk, dv, lse}) cudaFree(p);
  cudaStreamDestroy(stream);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
