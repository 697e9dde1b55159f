// Ring attention from C++ without PyTorch (include/flatattn/context_parallel.h).
//
//   ring_attention [--world W] [--n N] [--causal 0|1]
//       W ranks as threads of this process over a LocalRing on the CPU engine: shards a random (1, N, 4, 64)
//       sequence with the zigzag layout, runs ring_forward on every rank, and compares the gathered output with
//       flatattn::forward on the whole sequence (prints the largest difference).
//   RANK=r WORLD_SIZE=W NCCL_ID_FILE=/shared/path ring_attention --nccl [--n N]
//       one process per GPU (GPU r), built with -DFLATATTN_NCCL=ON: rank 0 writes an ncclUniqueId to the file,
//       the others read it; each rank runs ring_forward on its shard of the same random sequence over NCCL and
//       rank 0 reports the time of one causal forward.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
int nccl_demo(int n) {
  const char* rank_s = std::getenv("RANK");
  const char* world_s = std::getenv("WORLD_SIZE");
  const char* id_file = std::getenv("NCCL_ID_FILE");
  if (!rank_s || !world_s || !id_file) {
    std::fprintf(stderr, "--nccl needs RANK, WORLD_SIZE and NCCL_ID_FILE in the environment\n");
    return 2;
  }
  const int rank = std::atoi(rank_s), world = std::atoi(world_s);
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
  ncclCommInitRank(&comm, world, id, rank);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  const int h = 8, d = 128, nl = n / world;
  const size_t elems = static_cast<size_t>(nl) * h * d;
  void *q, *k, *v, *out;
  for (void** p : {&q, &k, &v, &out}) cudaMalloc(p, elems * 2);
  std::vector<std::uint16_t> host(elems, 0x3c00);  // f16 ones: the demo measures, tests/cuda checks values
  for (void* p : {q, k, v}) cudaMemcpy(p, host.data(), elems * 2, cudaMemcpyHostToDevice);
  auto view = [&](void* p) {
    return flatattn::TensorView::contiguous(p, flatattn::DType::f16, {1, nl, h, d}, flatattn::Device::cuda(rank));
  };
  auto transport = flatattn::nccl_transport(comm, rank, world, flatattn::Stream{stream});
  flatattn::Options o;
  o.causal = true;
  const auto t0 = std::chrono::steady_clock::now();
  const flatattn::Report rep = flatattn::ring_forward({view(q), view(k), view(v), view(out)}, *transport,
                                                      flatattn::SeqLayout::zigzag, o, flatattn::Stream{stream});
  cudaStreamSynchronize(stream);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (rank == 0) std::printf("rank 0 of %d: %s, N = %d, %.3f ms (first call, allocations included)\n", world,
                             rep.kernel.c_str(), n, ms);
  transport.reset();
  for (void* p : {q, k, v, out}) cudaFree(p);
  ncclCommDestroy(comm);
  return 0;
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
