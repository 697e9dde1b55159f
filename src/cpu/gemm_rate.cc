#include "src/cpu/gemm_rate.h"

#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "flatattn/error.h"
#include "src/core/half.h"
#include "src/core/validate.h"

#if FLATATTN_HAVE_OPENBLAS
#include <cblas.h>
#else
#include <Eigen/Core>
#endif

namespace flatattn::cpu {

namespace {

/// Runs gemm() (one n x n x n product) with `threads` threads and returns the median rate.
template <typename Gemm>
double time_gemm(int n, Gemm gemm) {
  using clock = std::chrono::steady_clock;
  gemm();  // warm-up: page faults, thread start-up
  std::vector<double> secs;
  const auto start = clock::now();
  while (secs.size() < 3 || std::chrono::duration<double>(clock::now() - start).count() < 0.5) {
    const auto t0 = clock::now();
    gemm();
    secs.push_back(std::chrono::duration<double>(clock::now() - t0).count());
  }
  std::sort(secs.begin(), secs.end());
  const double nd = static_cast<double>(n);
  return 2.0 * nd * nd * nd / secs[secs.size() / 2] * 1e-9;
}

/// The inputs of one rate probe, after checking n and threads: A and B (n x n, N(0, 1) from a fixed seed, drawn in
/// the same order for every GEMM) and the thread count to set (0: all hardware threads).
struct Operands {
  std::vector<float> a, b;
  int threads;
};
Operands random_operands(int n, int threads) {
  require(n >= 1, "n", std::to_string(n), "must be >= 1", "pass the matrix size, e.g. 2048");
  require(threads >= 0, "threads", std::to_string(threads), "must be >= 0 (0: all)", "pass 0 or a count");
  const std::size_t count = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  Operands o{std::vector<float>(count), std::vector<float>(count), threads > 0 ? threads : omp_get_num_procs()};
  std::mt19937 rng(12345);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (std::size_t i = 0; i < count; ++i) o.a[i] = nd(rng), o.b[i] = nd(rng);
  return o;
}

/// oneDNN's C entry points used here; their signatures are the same in oneDNN 2.x and 3.x (dnnl.h): dnnl_dim_t is
/// int64_t, dnnl_status_t an int (0 = success), bf16 passed as uint16_t.
struct OneDnn {
  using Gemm = int (*)(char, char, std::int64_t, std::int64_t, std::int64_t, float, const std::uint16_t*, std::int64_t,
                       const std::uint16_t*, std::int64_t, float, float*, std::int64_t);
  struct Version {  // dnnl_version_t
    int major, minor, patch;
    const char* hash;
    unsigned cpu_runtime, gpu_runtime;
  };
  using GetVersion = const Version* (*)();
  Gemm gemm = nullptr;
  const Version* version = nullptr;
  std::string file;
};

/// The first oneDNN that loads (FLATATTN_ONEDNN_LIB, else the usual sonames), once per process; gemm null if none.
const OneDnn& onednn() {
  static const OneDnn lib = [] {
    OneDnn l;
    std::vector<std::string> names;
    if (const char* env = std::getenv("FLATATTN_ONEDNN_LIB"); env != nullptr && *env != '\0') {
      names.push_back(env);
    } else {
      names = {"libdnnl.so.3", "libdnnl.so.2", "libdnnl.so"};
    }
    for (const std::string& name : names) {
      void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (h == nullptr) continue;
      auto gemm = reinterpret_cast<OneDnn::Gemm>(dlsym(h, "dnnl_gemm_bf16bf16f32"));
      auto version = reinterpret_cast<OneDnn::GetVersion>(dlsym(h, "dnnl_version"));
      if (gemm == nullptr || version == nullptr) {
        dlclose(h);
        continue;
      }
      l.gemm = gemm;
      l.version = version();
      l.file = name;
      break;  // kept loaded for the process's life
    }
    return l;
  }();
  return lib;
}

const char* runtime_name(unsigned r) {  // dnnl_types.h: DNNL_RUNTIME_SEQ 1, OMP 2, TBB 4, THREADPOOL 8
  switch (r) {
    case 1:
      return "sequential";
    case 2:
      return "OpenMP";
    case 4:
      return "TBB";
    case 8:
      return "threadpool";
    default:
      return "unknown";
  }
}

}  // namespace

std::string bf16_gemm_library() {
  const OneDnn& l = onednn();
  if (l.gemm == nullptr) return "";
  return "oneDNN " + std::to_string(l.version->major) + "." + std::to_string(l.version->minor) + "." +
         std::to_string(l.version->patch) + " (" + l.file + ", " + runtime_name(l.version->cpu_runtime) + " threads)";
}

double bf16_gemm_gflops(int n, int threads) {
  const Operands in = random_operands(n, threads);
  const OneDnn& l = onednn();
  if (l.gemm == nullptr)
    throw Error(Error::Kind::unsupported, "bf16 GEMM", "oneDNN",
                "no oneDNN library loads (tried FLATATTN_ONEDNN_LIB, else libdnnl.so.3, libdnnl.so.2, libdnnl.so)",
                "install oneDNN (Debian: apt-get install libdnnl2), or set FLATATTN_ONEDNN_LIB to a libdnnl.so (e.g. "
                "the one in PyPI's onednn-cpu-gomp wheel)");
  const std::size_t count = in.a.size();
  std::vector<std::uint16_t> a(count), b(count);
  std::vector<float> c(count);
  for (std::size_t i = 0; i < count; ++i) a[i] = float_to_bf16(in.a[i]), b[i] = float_to_bf16(in.b[i]);
  const int before = omp_get_max_threads();
  omp_set_num_threads(in.threads);
  int status = 0;
  const double rate = time_gemm(n, [&] {
    status |= l.gemm('N', 'N', n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  });
  omp_set_num_threads(before);
  if (status != 0)
    throw Error(Error::Kind::runtime, "bf16 GEMM", bf16_gemm_library(),
                "dnnl_gemm_bf16bf16f32 returned an error status (" + std::to_string(status) + ")",
                "check ONEDNN_VERBOSE=1 output, or set FLATATTN_ONEDNN_LIB to another oneDNN");
  return rate;
}

std::string sgemm_library() {
#if FLATATTN_HAVE_OPENBLAS
  return "OpenBLAS";
#else
  return "Eigen";
#endif
}

double sgemm_gflops(int n, int threads) {
  Operands in = random_operands(n, threads);
  std::vector<float>& a = in.a;
  std::vector<float>& b = in.b;
  std::vector<float> c(a.size());
  const int nt = in.threads;
#if FLATATTN_HAVE_OPENBLAS
  const int before = openblas_get_num_threads();
  openblas_set_num_threads(nt);
  const double rate = time_gemm(n, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  });
  openblas_set_num_threads(before);
#else
  const int before = Eigen::nbThreads();
  Eigen::setNbThreads(nt);
  using Map = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  Map ma(a.data(), n, n), mb(b.data(), n, n), mc(c.data(), n, n);
  const double rate = time_gemm(n, [&] { mc.noalias() = ma * mb; });
  Eigen::setNbThreads(before);
#endif
  return rate;
}

}  // namespace flatattn::cpu
