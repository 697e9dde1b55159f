// Ring attention from C++ without PyTorch (include/flatattn/context_parallel.h).
//
//   ring_attention [--world W] [--n N] [--causal 0|1]
//       W ranks as threads of this process over a LocalRing on the CPU engine: shards a random (1, N, 4, 64)
//       sequence with the zigzag layout, runs ring_forward on every rank, and compares the gathered output with
//       flatattn::forward on the whole sequence (prints the largest difference).
//   RANK=r WORLD_SIZE=W NCCL_ID_FILE=/fresh/path ring_attention --nccl [--n N]
//       one process per GPU (GPU r), built with -DFLATATTN_NCCL=ON: rank 0 writes an ncclUniqueId to the file
//       (remove it before a rerun), the others read it; each rank runs ring_forward and ring_backward (bf16,
//       H = 8, D = 128, causal zigzag) on its shard of the same seeded random sequence over NCCL, times the
//       second call, and compares out, dq, dk, dv with forward()/backward() on the whole sequence on its GPU
//       (max difference relative to the largest value, <= 2e-2; exit code 1 otherwise).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "flatattn/flatattn.h"

#ifdef FLATATTN_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace {

// The zigzag shard of rank r: chunks r and 2W-1-r of 2W, rows of a (1, N, H, D) float tensor.
std::vector<float> zigzag_shard(const std::vector<float>& full, int n, int row, int r, int w) {
  const int c = n / (2 * w);
  std::vector<float> out;
  for (int chunk : {r, 2 * w - 1 - r})
    out.insert(out.end(), full.begin() + static_cast<long>(chunk) * c * row,
               full.begin() + static_cast<long>(chunk + 1) * c * row);
  return out;
}

int cpu_demo(int world, int n, bool causal) {
  const int h = 4, d = 64, row = h * d;
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  std::vector<float> q(static_cast<size_t>(n) * row), k(q.size()), v(q.size()), ref(q.size());
  for (auto* t : {&q, &k, &v})
    for (float& x : *t) x = normal(gen);
  using flatattn::TensorView;
  flatattn::Options o;
  o.causal = causal;
  auto full = [&](std::vector<float>& t, int len) { return TensorView::contiguous(t.data(), flatattn::DType::f32, {1, len, h, d}); };
  flatattn::forward({full(q, n), full(k, n), full(v, n), full(ref, n)}, o);  // the single-device answer

  flatattn::LocalRing ring(world);
  const int nl = n / world;
  std::vector<std::vector<float>> out(world, std::vector<float>(static_cast<size_t>(nl) * row));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      std::vector<float> qs = zigzag_shard(q, n, row, r, world), ks = zigzag_shard(k, n, row, r, world),
                         vs = zigzag_shard(v, n, row, r, world);
      auto transport = ring.member(r);
      flatattn::Options ro = o;
      ro.num_threads = 1;
      flatattn::ring_forward({full(qs, nl), full(ks, nl), full(vs, nl), full(out[r], nl)}, *transport,
                             flatattn::SeqLayout::zigzag, ro);
    });
  for (auto& t : threads) t.join();
  double worst = 0;
  for (int r = 0; r < world; ++r) {
    const std::vector<float> want = zigzag_shard(ref, n, row, r, world);
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(double(want[i]) - out[r][i]));
  }
  std::printf("ring_forward, %d ranks (threads), zigzag, N = %d, causal = %d: max |ring - forward| = %.3g\n", world,
              n, causal, worst);
  return worst < 1e-4 ? 0 : 1;
}

#ifdef FLATATTN_HAVE_NCCL
std::uint16_t to_bf16(float f) {  // round to nearest even (finite inputs)
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A device bf16 (1, len, h, d) tensor.
struct Dev {
  void* p = nullptr;
  int len = 0, h = 0, d = 0, gpu = 0;
  Dev(const std::vector<std::uint16_t>& host, int len_, int h_, int d_, int gpu_) : len(len_), h(h_), d(d_), gpu(gpu_) {
    cudaMalloc(&p, host.size() * 2);
    cudaMemcpy(p, host.data(), host.size() * 2, cudaMemcpyHostToDevice);
  }
  ~Dev() { cudaFree(p); }
  flatattn::TensorView view() const {
    return flatattn::TensorView::contiguous(p, flatattn::DType::bf16, {1, len, h, d}, flatattn::Device::cuda(gpu));
  }
  std::vector<std::uint16_t> host() const {
    std::vector<std::uint16_t> x(static_cast<size_t>(len) * h * d);
    cudaMemcpy(x.data(), p, x.size() * 2, cudaMemcpyDeviceToHost);
    return x;
  }
};

// max |got - want| / max |want| over a rank's rows (bf16 vectors).
double rel_diff(const std::vector<std::uint16_t>& got, const std::vector<std::uint16_t>& want) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(double(from_bf16(got[i])) - from_bf16(want[i])));
    ref = std::max(ref, std::fabs(double(from_bf16(want[i]))));
  }
  return err / std::max(ref, 1e-30);
}

int nccl_demo(int n) {
  const char* rank_s = std::getenv("RANK");
  const char* world_s = std::getenv("WORLD_SIZE");
  const char* id_file = std::getenv("NCCL_ID_FILE");
  if (!rank_s || !world_s || !id_file) {
    std::fprintf(stderr, "--nccl needs RANK, WORLD_SIZE and NCCL_ID_FILE (a fresh path) in the environment\n");
    return 2;
  }
  const int rank = std::atoi(rank_s), world = std::atoi(world_s);
  if (world < 1 || n % (2 * world)) {
    std::fprintf(stderr, "--n must be a multiple of 2 x WORLD_SIZE (zigzag)\n");
    return 2;
  }
  cudaSetDevice(rank);
  ncclUniqueId id;
  if (rank == 0) {
    ncclGetUniqueId(&id);
    std::ofstream(std::string(id_file) + ".tmp", std::ios::binary).write(id.internal, sizeof(id.internal));
    std::rename((std::string(id_file) + ".tmp").c_str(), id_file);
  } else {
    for (;;) {
      std::ifstream f(id_file, std::ios::binary);
      if (f && f.read(id.internal, sizeof(id.internal))) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ncclComm_t comm;
  if (ncclCommInitRank(&comm, world, id, rank) != ncclSuccess) {
    std::fprintf(stderr, "rank %d: ncclCommInitRank failed\n", rank);
    return 1;
  }
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  const flatattn::Stream fs{stream};
  const int h = 8, d = 128, nl = n / world, row = h * d;
  // The same random sequence on every rank (seeded), each rank keeps its zigzag shard.
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  std::vector<float> full[4];
  for (auto& t : full) {
    t.resize(static_cast<size_t>(n) * row);
    for (float& x : t) x = normal(gen);
  }
  auto bf16 = [](const std::vector<float>& x) {
    std::vector<std::uint16_t> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = to_bf16(x[i]);
    return y;
  };
  const std::vector<std::uint16_t> zeros(static_cast<size_t>(nl) * row, 0);
  Dev q(bf16(zigzag_shard(full[0], n, row, rank, world)), nl, h, d, rank);
  Dev k(bf16(zigzag_shard(full[1], n, row, rank, world)), nl, h, d, rank);
  Dev v(bf16(zigzag_shard(full[2], n, row, rank, world)), nl, h, d, rank);
  Dev dout(bf16(zigzag_shard(full[3], n, row, rank, world)), nl, h, d, rank);
  Dev out(zeros, nl, h, d, rank), dq(zeros, nl, h, d, rank), dk(zeros, nl, h, d, rank), dv(zeros, nl, h, d, rank);
  void* lse = nullptr;
  cudaMalloc(&lse, static_cast<size_t>(h) * nl * 4);
  const auto lse_view = flatattn::TensorView::contiguous(lse, flatattn::DType::f32, {1, h, nl}, flatattn::Device::cuda(rank));
  auto transport = flatattn::nccl_transport(comm, rank, world, fs);
  flatattn::Options o;
  o.causal = true;
  flatattn::Report rep;
  double ms_fwd = 0, ms_bwd = 0;
  for (int iter = 0; iter < 2; ++iter) {  // the second call is timed (the first pays NCCL's connection setup)
    const auto t0 = std::chrono::steady_clock::now();
    o.return_lse = true;
    rep = flatattn::ring_forward({q.view(), k.view(), v.view(), out.view(), lse_view}, *transport,
                                 flatattn::SeqLayout::zigzag, o, fs);
    cudaStreamSynchronize(stream);
    const auto t1 = std::chrono::steady_clock::now();
    o.return_lse = false;
    flatattn::ring_backward({dout.view(), q.view(), k.view(), v.view(), out.view(), lse_view, dq.view(), dk.view(),
                             dv.view()}, *transport, flatattn::SeqLayout::zigzag, o, fs);
    cudaStreamSynchronize(stream);
    ms_fwd = std::chrono::duration<double, std::milli>(t1 - t0).count();
    ms_bwd = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  }
  // The single-GPU answer on the whole sequence, this rank's rows of it.
  Dev fq(bf16(full[0]), n, h, d, rank), fk(bf16(full[1]), n, h, d, rank), fv(bf16(full[2]), n, h, d, rank),
      fdo(bf16(full[3]), n, h, d, rank);
  const std::vector<std::uint16_t> fzeros(static_cast<size_t>(n) * row, 0);
  Dev fo(fzeros, n, h, d, rank), fdq(fzeros, n, h, d, rank), fdk(fzeros, n, h, d, rank), fdv(fzeros, n, h, d, rank);
  void* flse = nullptr;
  cudaMalloc(&flse, static_cast<size_t>(h) * n * 4);
  const auto flse_view = flatattn::TensorView::contiguous(flse, flatattn::DType::f32, {1, h, n}, flatattn::Device::cuda(rank));
  o.return_lse = true;
  flatattn::forward({fq.view(), fk.view(), fv.view(), fo.view(), flse_view}, o, fs);
  o.return_lse = false;
  flatattn::backward({fdo.view(), fq.view(), fk.view(), fv.view(), fo.view(), flse_view, fdq.view(), fdk.view(),
                      fdv.view()}, o, fs);
  cudaStreamSynchronize(stream);
  auto rows = [&](const Dev& t) {
    const std::vector<std::uint16_t> x = t.host();
    std::vector<float> f(x.size());
    for (size_t i = 0; i < x.size(); ++i) f[i] = from_bf16(x[i]);
    return bf16(zigzag_shard(f, n, row, rank, world));
  };
  const double e[4] = {rel_diff(out.host(), rows(fo)), rel_diff(dq.host(), rows(fdq)), rel_diff(dk.host(), rows(fdk)),
                       rel_diff(dv.host(), rows(fdv))};
  const bool ok = e[0] <= 2e-2 && e[1] <= 2e-2 && e[2] <= 2e-2 && e[3] <= 2e-2;
  std::printf("rank %d of %d: %s, N = %d (bf16, H = %d, D = %d, causal zigzag): fwd %.3f ms, bwd %.3f ms; "
              "max|ring - 1 GPU| / max|1 GPU|: out %.2g dq %.2g dk %.2g dv %.2g (<= 2e-2: %s)\n",
              rank, world, rep.kernel.c_str(), n, h, d, ms_fwd, ms_bwd, e[0], e[1], e[2], e[3], ok ? "PASS" : "FAIL");
  transport.reset();
  cudaFree(lse);
  cudaFree(flse);
  cudaStreamDestroy(stream);
  ncclCommDestroy(comm);
  return ok ? 0 : 1;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int world = 4, n = 512;
  bool causal = true, nccl = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--world" && i + 1 < argc) world = std::atoi(argv[++i]);
    else if (a == "--n" && i + 1 < argc) n = std::atoi(argv[++i]);
    else if (a == "--causal" && i + 1 < argc) causal = std::atoi(argv[++i]) != 0;
    else if (a == "--nccl") nccl = true;
    else {
      std::fprintf(stderr, "usage: ring_attention [--world W] [--n N] [--causal 0|1] [--nccl]\n");
      return 2;
    }
  }
  try {
    if (nccl) {
#ifdef FLATATTN_HAVE_NCCL
      return nccl_demo(n);
#else
      std::fprintf(stderr, "built without NCCL: rebuild with -DFLATATTN_CUDA=ON -DFLATATTN_NCCL=ON\n");
      return 2;
#endif
    }
    if (world < 1 || n % (2 * world)) {
      std::fprintf(stderr, "--n must be a multiple of 2 x --world (zigzag)\n");
      return 2;
    }
    return cpu_demo(world, n, causal);
  } catch (const flatattn::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
