#include "src/cpu/gemm_rate.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

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

}  // namespace

std::string sgemm_library() {
#if FLATATTN_HAVE_OPENBLAS
  return "OpenBLAS";
#else
  return "Eigen";
#endif
}

double sgemm_gflops(int n, int threads) {
  require(n >= 1, "n", std::to_string(n), "must be >= 1", "pass the matrix size, e.g. 2048");
  require(threads >= 0, "threads", std::to_string(threads), "must be >= 0 (0: all)", "pass 0 or a count");
  const int nt = threads > 0 ? threads : omp_get_num_procs();
  const std::size_t count = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  std::vector<float> a(count), b(count), c(count);
  std::mt19937 rng(12345);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (std::size_t i = 0; i < count; ++i) a[i] = nd(rng), b[i] = nd(rng);
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
