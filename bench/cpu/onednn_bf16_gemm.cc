// The machine's bf16 GEMM rate by a library, torch-free (issue 21's ceiling for the bf16 forward): oneDNN's
// matmul primitive (the brgemm/AMX kernels torch.matmul reaches; C = A B, bf16 in, fp32 out, row-major) and
// its older GEMM API (dnnl_gemm_bf16bf16f32) on n x n x n, 1 thread, timed by process CPU time (a shared
// machine's load drops out), median of `reps` calls after one warm-up; prints GFLOP/s (2 n^3 per call).
// ONEDNN_VERBOSE=1 names the implementation each ran. oneDNN is loaded at run time (dlopen), so the project does not depend on it; not built by
// CMake. Any libdnnl.so.3 works, e.g. the one in PyPI's onednn-cpu-gomp wheel (its data/lib/):
//
//   g++ -O2 -o /tmp/onednn_bf16_gemm bench/cpu/onednn_bf16_gemm.cc -ldl
//   OMP_NUM_THREADS=1 /tmp/onednn_bf16_gemm /path/to/libdnnl.so.3 [n=2048] [reps=7]
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

namespace {

// oneDNN 3.x's C API (dnnl.h, dnnl_types.h), declared here: handles are pointers, dnnl_dim_t is int64_t,
// dnnl_status_t an int (0 = success). Enum values used: engine kind cpu 1, data types bf16 2 / f32 3, format
// tag ab 3, stream flags in-order 1, arguments SRC 1, DST 17, WEIGHTS 33 (ONEDNN_VERBOSE shows they took).
using GemmBf16 = int (*)(char, char, std::int64_t, std::int64_t, std::int64_t, float, const std::uint16_t*,
                         std::int64_t, const std::uint16_t*, std::int64_t, float, float*, std::int64_t);
using H = void*;
struct ExecArg {
  int arg;
  H memory;
};
using Dims = std::int64_t[12];
struct Api {
  int (*engine_create)(H*, int, std::size_t);
  int (*stream_create)(H*, H, unsigned);
  int (*stream_wait)(H);
  int (*md_create)(H*, int, const Dims, int, int);
  int (*matmul_pd_create)(H*, H, H, H, H, H, H);
  int (*primitive_create)(H*, H);
  int (*memory_create)(H*, H, H, void*);
  int (*execute)(H, H, int, const ExecArg*);
};

template <typename F>
bool sym(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f) std::fprintf(stderr, "no %s in the library\n", name);
  return f != nullptr;
}

/// C = A B by the matmul primitive; returns a callable, or prints why not and returns false.
bool matmul_call(void* lib, std::int64_t n, const std::uint16_t* a, const std::uint16_t* b, float* c,
                 H* prim, H* stream, ExecArg args[3]) {
  Api x;
  if (!sym(lib, "dnnl_engine_create", x.engine_create) || !sym(lib, "dnnl_stream_create", x.stream_create) ||
      !sym(lib, "dnnl_stream_wait", x.stream_wait) || !sym(lib, "dnnl_memory_desc_create_with_tag", x.md_create) ||
      !sym(lib, "dnnl_matmul_primitive_desc_create", x.matmul_pd_create) ||
      !sym(lib, "dnnl_primitive_create", x.primitive_create) || !sym(lib, "dnnl_memory_create", x.memory_create) ||
      !sym(lib, "dnnl_primitive_execute", x.execute))
    return false;
  H eng = nullptr, md_a = nullptr, md_b = nullptr, md_c = nullptr, pd = nullptr, ma = nullptr, mb = nullptr, mc = nullptr;
  Dims dims = {n, n};
  if (x.engine_create(&eng, 1, 0) || x.stream_create(stream, eng, 1) || x.md_create(&md_a, 2, dims, 2, 3) ||
      x.md_create(&md_b, 2, dims, 2, 3) || x.md_create(&md_c, 2, dims, 3, 3) ||
      x.matmul_pd_create(&pd, eng, md_a, md_b, nullptr, md_c, nullptr) || x.primitive_create(prim, pd) ||
      x.memory_create(&ma, md_a, eng, const_cast<std::uint16_t*>(a)) ||
      x.memory_create(&mb, md_b, eng, const_cast<std::uint16_t*>(b)) || x.memory_create(&mc, md_c, eng, c)) {
    std::fprintf(stderr, "matmul primitive setup failed\n");
    return false;
  }
  args[0] = {1, ma}, args[1] = {33, mb}, args[2] = {17, mc};
  return true;
}

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::uint16_t to_bf16(float x) {  // nearest even (inputs are finite)
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s libdnnl.so.3 [n=2048] [reps=7]\n", argv[0]);
    return 2;
  }
  const std::int64_t n = argc > 2 ? std::atoll(argv[2]) : 2048;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 7;
  void* lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) {
    std::fprintf(stderr, "dlopen: %s\n", dlerror());
    return 1;
  }
  const auto gemm = reinterpret_cast<GemmBf16>(dlsym(lib, "dnnl_gemm_bf16bf16f32"));
  if (!gemm) {
    std::fprintf(stderr, "no dnnl_gemm_bf16bf16f32 in %s\n", argv[1]);
    return 1;
  }
  std::vector<std::uint16_t> a(n * n), b(n * n);
  std::vector<float> c(n * n);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& x : a) x = to_bf16(nd(rng));
  for (auto& x : b) x = to_bf16(nd(rng));
  auto time = [&](const char* what, auto call) {
    if (call() != 0) {
      std::fprintf(stderr, "%s failed\n", what);
      return false;
    }
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      const double t0 = cpu_seconds();
      call();
      t.push_back(cpu_seconds() - t0);
    }
    std::sort(t.begin(), t.end());
    const double s = t[t.size() / 2];
    std::printf("onednn bf16 %-6s n=%lld: %8.2f ms %7.1f GFLOP/s (CPU time, median of %d)\n", what,
                static_cast<long long>(n), s * 1e3, 2.0 * n * n * n / s * 1e-9, reps);
    return true;
  };
  H prim = nullptr, stream = nullptr;
  ExecArg args[3];
  int (*execute)(H, H, int, const ExecArg*) = nullptr;
  int (*wait)(H) = nullptr;
  bool ok = matmul_call(lib, n, a.data(), b.data(), c.data(), &prim, &stream, args) &&
            sym(lib, "dnnl_primitive_execute", execute) && sym(lib, "dnnl_stream_wait", wait) &&
            time("matmul", [&] { return execute(prim, stream, 3, args) || wait(stream); });
  ok = time("gemm", [&] { return gemm('N', 'N', n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n); }) && ok;
  return ok ? 0 : 1;
}
