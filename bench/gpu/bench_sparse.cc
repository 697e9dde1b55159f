// Block-sparse forward against our dense forward (issue 16's targets: at 10 % density >= 8x faster than
// dense; TFLOP/s counted on the visited blocks >= 85 % of dense at 50/25/10 %). Random 128 x 128 block masks
// (every listed block full, lists per (b, h), drawn once per density from a fixed seed), bf16, (B, H, N, D)
// tensors, B * N = 16k tokens, Hq * D = 2048 by default; timed like bench_fwd (timing.h: L2 flushed, events,
// median). FLOPs of the sparse call: 4 * D * (listed blocks * 128 * 128) * B * H (visited blocks); of the dense
// call 4 * D * N^2 * B * H. With --bwd 1 also the backward (the q lists, their transpose, passed too) and
// forward + backward, sparse against dense, same run; FLOPs 2.5x (backward) and 3.5x (both) the forward's, as
// bench_bwd counts them; the forward then returns LSE (the training path, Dataflow::flash). Each row ends with
// the kernels that ran (the Reports of one more untimed call each: dense / sparse forward, then the backwards).
//
//   bench_sparse --out sparse.json [--d 128] [--n 16384] [--density 100,50,25,10] [--reps 20] [--bwd 0|1]
//                [--commit HASH]
#include <cuda_runtime.h>

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

constexpr long kBlock = 128;

}  // namespace

int main(int argc, char** argv) {
  std::string out = "sparse.json", commit = "unknown";
  std::vector<long> ds = {128}, ns = {16384}, densities = {100, 50, 25, 10};
  int reps = 20, warmup = 3, bwd = 0;
  long width = 2048;
  if (!flatattn::bench::parse_options(argc, argv, {
      {"--out", [&](const std::string& v) { out = v; }},
      {"--d", [&](const std::string& v) { ds = parse_list(v); }},
      {"--n", [&](const std::string& v) { ns = parse_list(v); }},
      {"--density", [&](const std::string& v) { densities = parse_list(v); }},
      {"--reps", [&](const std::string& v) { reps = std::stoi(v); }},
      {"--width", [&](const std::string& v) { width = std::stol(v); }},
      {"--commit", [&](const std::string& v) { commit = v; }},
      {"--bwd", [&](const std::string& v) { bwd = std::stoi(v); }},
      }))
    return 2;
  flatattn::bench::Timer timer;
  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "properties");
  const long kTokens = 16384, elems = kTokens * width;
  void *q, *k, *v, *o, *dout = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr, *lse = nullptr;
  for (void** p : {&q, &k, &v, &o}) ok(cudaMalloc(p, elems * 2), "cudaMalloc");
  flatattn::bench::fill_random_bf16({q, k, v}, elems);
  if (bwd) {
    for (void** p : {&dout, &dq, &dk, &dv}) ok(cudaMalloc(p, elems * 2), "cudaMalloc");
    ok(cudaMalloc(&lse, kTokens * (width / 32) * 4), "cudaMalloc(lse)");  // H <= width / 32 (D >= 32)
    flatattn::bench::fill_random_bf16({dout}, elems);
  }

  std::ostringstream js;
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  js << "{\"device\": " << json_str(prop.name) << ", \"commit\": " << json_str(commit) << ", \"date\": "
     << json_str(date) << ", \"rows\": [\n";
  bool first = true;
  std::printf("%4s %6s %3s %3s %7s | %9s %9s | %8s %9s %9s", "D", "N", "B", "H", "density", "dense ms", "sparse ms",
              "speedup", "dense TF", "sparse TF");
  if (bwd)
    std::printf(" | %9s %9s %8s %9s | %9s %9s %8s %9s", "dBwd ms", "sBwd ms", "bwd x", "sBwd TF", "dF+B ms", "sF+B ms",
                "f+b x", "sF+B TF");
  std::printf("\n");
  for (long d : ds) {
    const long h = width / d;
    for (long n : ns) {
      const long b = std::max(1L, kTokens / n), nb = (n + kBlock - 1) / kBlock;
      using flatattn::DType;
      using flatattn::TensorView;
      auto view = [&](void* p) { return flatattn::bench::bhnd_view(p, b, n, h, d); };
      flatattn::ForwardArgs dense;
      dense.q = view(q), dense.k = view(k), dense.v = view(v), dense.out = view(o);
      flatattn::Options opt;  // automatic dataflow, no LSE (--bwd: LSE, the Flash dataflow)
      flatattn::BackwardArgs dense_b;
      if (bwd) {
        opt.return_lse = true, opt.dataflow = flatattn::Dataflow::flash;
        dense.lse = TensorView::strided(lse, DType::f32, {b, h, n}, {h * n, n, 1}, flatattn::Device::cuda(0));
        dense_b.dout = view(dout), dense_b.q = dense.q, dense_b.k = dense.k, dense_b.v = dense.v;
        dense_b.out = dense.out, dense_b.lse = dense.lse;
        dense_b.dq = view(dq), dense_b.dk = view(dk), dense_b.dv = view(dv);
      }
      double dense_ms = -1, dense_b_ms = -1, dense_fb_ms = -1;
      std::string derr, dense_k, dense_bk;  // the kernels that ran
      try {
        dense_ms = timer.median_ms([&] { flatattn::forward(dense, opt); }, warmup, reps);
        dense_k = flatattn::forward(dense, opt).kernel;
        if (bwd) {
          dense_b_ms = timer.median_ms([&] { flatattn::backward(dense_b, opt); }, warmup, reps);
          dense_bk = flatattn::backward(dense_b, opt).kernel;
          dense_fb_ms = timer.median_ms(
              [&] {
                flatattn::forward(dense, opt);
                flatattn::backward(dense_b, opt);
              },
              warmup, reps);
        }
      } catch (const flatattn::Error& e) {
        derr = e.what();
      }
      const double dense_flops = 4.0 * d * double(n) * double(n) * double(b * h);
      for (long dens : densities) {
        // Full-block lists (b, h, NQB): each block listed with probability dens / 100.
        std::mt19937_64 g(1000 + dens);
        std::uniform_real_distribution<double> u(0.0, 1.0);
        std::vector<std::int32_t> num(b * h * nb, 0), idx(b * h * nb * nb, 0), zero_num(b * h * nb, 0);
        std::vector<std::int32_t> qnum(b * h * nb, 0), qidx(b * h * nb * nb, 0);  // the transpose (per key block)
        long listed = 0;
        for (long r = 0; r < b * h * nb; ++r)
          for (long c = 0; c < nb; ++c)
            if (u(g) * 100.0 < double(dens)) {
              idx[r * nb + num[r]++] = static_cast<std::int32_t>(c), ++listed;
              const long qrow = (r / nb) * nb + c;  // (b, h) of row r, key block c; rows visited in order
              qidx[qrow * nb + qnum[qrow]++] = static_cast<std::int32_t>(r % nb);
            }
        void *dnum, *didx, *dzero, *dqnum, *dqidx;
        ok(cudaMalloc(&dnum, num.size() * 4), "cudaMalloc(lists)");
        ok(cudaMalloc(&didx, idx.size() * 4), "cudaMalloc(lists)");
        ok(cudaMalloc(&dzero, zero_num.size() * 4), "cudaMalloc(lists)");
        ok(cudaMalloc(&dqnum, qnum.size() * 4), "cudaMalloc(lists)");
        ok(cudaMalloc(&dqidx, qidx.size() * 4), "cudaMalloc(lists)");
        ok(cudaMemcpy(dnum, num.data(), num.size() * 4, cudaMemcpyHostToDevice), "copy lists");
        ok(cudaMemcpy(didx, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice), "copy lists");
        ok(cudaMemcpy(dzero, zero_num.data(), zero_num.size() * 4, cudaMemcpyHostToDevice), "copy lists");
        ok(cudaMemcpy(dqnum, qnum.data(), qnum.size() * 4, cudaMemcpyHostToDevice), "copy lists");
        ok(cudaMemcpy(dqidx, qidx.data(), qidx.size() * 4, cudaMemcpyHostToDevice), "copy lists");
        const auto dev = flatattn::Device::cuda(0);
        flatattn::BlockSparse bs;
        bs.block_q = bs.block_kv = kBlock;
        bs.kv_num_blocks = TensorView::contiguous(dzero, DType::i32, {b, h, nb}, dev);  // no partial blocks
        bs.kv_indices = TensorView::contiguous(didx, DType::i32, {b, h, nb, nb}, dev);
        bs.full_kv_num_blocks = TensorView::contiguous(dnum, DType::i32, {b, h, nb}, dev);
        bs.full_kv_indices = TensorView::contiguous(didx, DType::i32, {b, h, nb, nb}, dev);
        bs.q_num_blocks = TensorView::contiguous(dzero, DType::i32, {b, h, nb}, dev);
        bs.q_indices = TensorView::contiguous(dqidx, DType::i32, {b, h, nb, nb}, dev);
        bs.full_q_num_blocks = TensorView::contiguous(dqnum, DType::i32, {b, h, nb}, dev);
        bs.full_q_indices = TensorView::contiguous(dqidx, DType::i32, {b, h, nb, nb}, dev);
        flatattn::ForwardArgs sa = dense;
        sa.block_sparse = bs;
        flatattn::BackwardArgs sb = dense_b;
        sb.block_sparse = bs;
        double sparse_ms = -1, sparse_b_ms = -1, sparse_fb_ms = -1;
        std::string err = derr, sparse_k, sparse_bk;
        try {
          sparse_ms = timer.median_ms([&] { flatattn::forward(sa, opt); }, warmup, reps);
          sparse_k = flatattn::forward(sa, opt).kernel;
          if (bwd) {
            sparse_b_ms = timer.median_ms([&] { flatattn::backward(sb, opt); }, warmup, reps);
            sparse_bk = flatattn::backward(sb, opt).kernel;
            sparse_fb_ms = timer.median_ms(
                [&] {
                  flatattn::forward(sa, opt);
                  flatattn::backward(sb, opt);
                },
                warmup, reps);
          }
        } catch (const flatattn::Error& e) {
          err = e.what();
        }
        // Visited blocks: the ragged last block row/column counts its real rows and keys only.
        const double visited = double(listed) * kBlock * kBlock;
        const double sparse_flops = 4.0 * d * visited;
        const double dense_tf = dense_ms > 0 ? dense_flops / dense_ms / 1e9 : -1;
        const double sparse_tf = sparse_ms > 0 ? sparse_flops / sparse_ms / 1e9 : -1;
        const double speedup = dense_ms > 0 && sparse_ms > 0 ? dense_ms / sparse_ms : -1;
        std::printf("%4ld %6ld %3ld %3ld %6ld%% | %9.3f %9.3f | %8.2f %9.1f %9.1f", d, n, b, h, dens, dense_ms,
                    sparse_ms, speedup, dense_tf, sparse_tf);
        auto ratio = [](double a, double b2) { return a > 0 && b2 > 0 ? a / b2 : -1.0; };
        auto tf = [](double flops, double ms) { return ms > 0 ? flops / ms / 1e9 : -1.0; };
        if (bwd)
          std::printf(" | %9.3f %9.3f %8.2f %9.1f | %9.3f %9.3f %8.2f %9.1f", dense_b_ms, sparse_b_ms,
                      ratio(dense_b_ms, sparse_b_ms), tf(2.5 * sparse_flops, sparse_b_ms), dense_fb_ms, sparse_fb_ms,
                      ratio(dense_fb_ms, sparse_fb_ms), tf(3.5 * sparse_flops, sparse_fb_ms));
        std::printf(" | %s / %s", dense_k.c_str(), sparse_k.c_str());
        if (bwd) std::printf(" | %s / %s", dense_bk.c_str(), sparse_bk.c_str());
        std::printf(" %s\n", err.c_str());
        std::fflush(stdout);
        js << (first ? "" : ",\n") << "  {\"D\": " << d << ", \"N\": " << n << ", \"B\": " << b << ", \"H\": " << h
           << ", \"density_pct\": " << dens << ", \"listed_blocks\": " << listed << ", \"dense_ms\": " << dense_ms
           << ", \"sparse_ms\": " << sparse_ms << ", \"speedup\": " << speedup << ", \"dense_tflops\": " << dense_tf
           << ", \"sparse_tflops_visited\": " << sparse_tf;
        if (bwd)
          js << ", \"dense_bwd_ms\": " << dense_b_ms << ", \"sparse_bwd_ms\": " << sparse_b_ms
             << ", \"bwd_speedup\": " << ratio(dense_b_ms, sparse_b_ms) << ", \"dense_bwd_tflops\": "
             << tf(2.5 * dense_flops, dense_b_ms) << ", \"sparse_bwd_tflops_visited\": "
             << tf(2.5 * sparse_flops, sparse_b_ms) << ", \"dense_fwdbwd_ms\": " << dense_fb_ms
             << ", \"sparse_fwdbwd_ms\": " << sparse_fb_ms << ", \"fwdbwd_speedup\": "
             << ratio(dense_fb_ms, sparse_fb_ms) << ", \"sparse_fwdbwd_tflops_visited\": "
             << tf(3.5 * sparse_flops, sparse_fb_ms);
        js << ", \"dense_kernel\": " << json_str(dense_k) << ", \"sparse_kernel\": " << json_str(sparse_k);
        if (bwd) js << ", \"dense_bwd_kernel\": " << json_str(dense_bk) << ", \"sparse_bwd_kernel\": " << json_str(sparse_bk);
        js << ", \"error\": " << json_str(err) << "}";
        first = false;
        for (void* p : {dnum, didx, dzero, dqnum, dqidx}) cudaFree(p);
      }
    }
  }
  js << "\n]}\n";
  std::ofstream(out) << js.str();
  for (void* p : {q, k, v, o, dout, dq, dk, dv, lse}) cudaFree(p);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
