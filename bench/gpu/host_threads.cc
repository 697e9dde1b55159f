// Host time per call under contention: T host threads, each with its own non-blocking stream and its own
// tensors (B = 1, N = 128 + 16 t so every thread has its own shape, H = 1, D = 64, bf16), call forward() /
// backward() back to back; each call's wall time (C++ entry to the launches returning) is recorded, the
// stream synchronized every --sync-every calls outside the timed calls. Reports the median / p90 per call
// at 1 thread and at --threads threads, for: forward (Flash), forward (automatic: the planner's cache),
// backward, and a varlen forward (B = 2 sequences: the metadata word's copy). The ratio of the two shows what
// the shared caches (device properties, family, planner, metadata word) cost under contention (issue 20).
//
//   host_threads [--threads 8] [--calls 5000] [--sync-every 250] [--out host_threads.json] [--commit HASH]
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "flatattn/flatattn.h"
#include "bench/gpu/bench_util.h"
#include "bench/gpu/timing.h"

namespace {

using flatattn::bench::json_str;
using flatattn::bench::ok;

/// One thread's device tensors and its arguments for each timed call.
struct Worker {
  long n;
  cudaStream_t stream = nullptr;
  std::vector<void*> bufs;
  flatattn::ForwardArgs fa, va;
  flatattn::BackwardArgs ba;

  explicit Worker(long n_) : n(n_) {
    constexpr long d = 64;
    ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    auto alloc = [&](long bytes) {
      void* p = nullptr;
      ok(cudaMalloc(&p, bytes), "cudaMalloc");
      ok(cudaMemset(p, 0, bytes), "cudaMemset");
      bufs.push_back(p);
      return p;
    };
    auto view = [&] { return flatattn::bench::bhnd_view(alloc(n * d * 2), 1, n, 1, d); };
    fa.q = view(), fa.k = view(), fa.v = view(), fa.out = view();
    ba.dout = view(), ba.q = fa.q, ba.k = fa.k, ba.v = fa.v, ba.out = fa.out, ba.dq = view(), ba.dk = view(), ba.dv = view();
    ba.lse = flatattn::TensorView::strided(alloc(n * 4), flatattn::DType::f32, {1, 1, n}, {n, n, 1}, flatattn::Device::cuda(0));
    // Varlen: the same rows as two sequences of n / 2 (offsets on the device).
    const int cu[3] = {0, static_cast<int>(n / 2), static_cast<int>(n)};
    void* cud = alloc(sizeof cu);
    ok(cudaMemcpy(cud, cu, sizeof cu, cudaMemcpyHostToDevice), "cudaMemcpy");
    auto packed = [&](const flatattn::TensorView& t) {
      return flatattn::TensorView::strided(t.data, flatattn::DType::bf16, {n, 1, d}, {d, d, 1}, flatattn::Device::cuda(0));
    };
    va.q = packed(fa.q), va.k = packed(fa.k), va.v = packed(fa.v), va.out = packed(fa.out);
    flatattn::Varlen w;
    w.cu_seqlens_q = flatattn::TensorView::contiguous(cud, flatattn::DType::i32, {3}, flatattn::Device::cuda(0));
    w.cu_seqlens_k = w.cu_seqlens_q;
    w.max_seqlen_q = w.max_seqlen_k = n / 2;
    va.varlen = w;
  }
  ~Worker() {
    for (void* p : bufs) cudaFree(p);
    cudaStreamDestroy(stream);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
};

struct Row {
  std::string name;
  int threads = 0;
  double median_us = -1, p90_us = -1;
  std::string error;
};

double quantile(std::vector<double>& v, double q) {
  if (v.empty()) return -1;
  auto it = v.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), it, v.end());
  return *it;
}

/// Every thread calls `call(worker)` `calls` times (after calls / 10 warm-up calls); all threads start together.
Row run(const std::string& name, int threads, int calls, int sync_every, std::vector<std::unique_ptr<Worker>>& workers,
        const std::function<void(Worker&)>& call) {
  Row r;
  r.name = name;
  r.threads = threads;
  std::vector<std::vector<double>> us(static_cast<std::size_t>(threads));
  std::vector<std::string> errors(static_cast<std::size_t>(threads));
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Worker& w = *workers[static_cast<std::size_t>(t)];
      auto& mine = us[static_cast<std::size_t>(t)];
      try {
        ok(cudaSetDevice(0), "cudaSetDevice");
        for (int i = 0; i < std::max(1, calls / 10); ++i) call(w);
        ok(cudaStreamSynchronize(w.stream), "synchronize");
        ready.fetch_add(1);
        while (ready.load() < threads) std::this_thread::yield();
        for (int i = 0; i < calls; ++i) {
          const auto t0 = std::chrono::steady_clock::now();
          call(w);
          const auto t1 = std::chrono::steady_clock::now();
          mine.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
          if ((i + 1) % sync_every == 0) ok(cudaStreamSynchronize(w.stream), "synchronize");
        }
        ok(cudaStreamSynchronize(w.stream), "synchronize");
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(t)] = e.what();
        ready.fetch_add(1);
      }
    });
  }
  for (std::thread& th : pool) th.join();
  std::vector<double> all;
  for (auto& v : us) all.insert(all.end(), v.begin(), v.end());
  for (auto& e : errors)
    if (!e.empty()) r.error = e;
  r.median_us = quantile(all, 0.5);
  r.p90_us = quantile(all, 0.9);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "host_threads.json", commit = "unknown";
  int threads = 8, calls = 5000, sync_every = 250;
  if (!flatattn::bench::parse_options(argc, argv, {
      {"--out", [&](const std::string& v) { out = v; }},
      {"--commit", [&](const std::string& v) { commit = v; }},
      {"--threads", [&](const std::string& v) { threads = std::max(1, std::stoi(v)); }},
      {"--calls", [&](const std::string& v) { calls = std::max(1, std::stoi(v)); }},
      {"--sync-every", [&](const std::string& v) { sync_every = std::max(1, std::stoi(v)); }},
      }))
    return 2;
  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "properties");
  ok(cudaSetDevice(0), "cudaSetDevice");
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < threads; ++t) workers.push_back(std::make_unique<Worker>(128 + 16L * t));

  flatattn::Options flash, automatic;
  flash.dataflow = flatattn::Dataflow::flash;
  const std::vector<std::pair<std::string, std::function<void(Worker&)>>> bodies = {
      {"forward flash", [&](Worker& w) { flatattn::forward(w.fa, flash, {w.stream}); }},
      {"forward auto", [&](Worker& w) { flatattn::forward(w.fa, automatic, {w.stream}); }},
      {"backward", [&](Worker& w) { flatattn::backward(w.ba, automatic, {w.stream}); }},
      {"forward varlen", [&](Worker& w) { flatattn::forward(w.va, flash, {w.stream}); }},
  };
  std::vector<Row> rows;
  for (const auto& [name, body] : bodies) {
    rows.push_back(run(name, 1, calls, sync_every, workers, body));
    if (threads > 1) rows.push_back(run(name, threads, calls, sync_every, workers, body));
  }
  std::printf("host time per call, B=1 N=128+16t H=1 D=64 bf16, %d calls per thread (%s)\n", calls, prop.name);
  std::printf("%-18s %8s %10s %10s\n", "call", "threads", "median us", "p90 us");
  for (const Row& r : rows) {
    if (!r.error.empty()) {
      std::printf("%-18s %8d error: %s\n", r.name.c_str(), r.threads, r.error.c_str());
      continue;
    }
    std::printf("%-18s %8d %10.2f %10.2f\n", r.name.c_str(), r.threads, r.median_us, r.p90_us);
  }
  std::ostringstream js;
  js << "{\"device\": " << json_str(prop.name) << ", \"commit\": " << json_str(commit) << ", \"calls\": " << calls
     << ", \"sync_every\": " << sync_every << ", \"rows\": [\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    js << (i ? ",\n" : "") << "  {\"call\": " << json_str(r.name) << ", \"threads\": " << r.threads
       << ", \"median_us\": " << r.median_us << ", \"p90_us\": " << r.p90_us << ", \"error\": " << json_str(r.error)
       << "}";
  }
  js << "\n]}\n";
  std::ofstream(out) << js.str();
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
