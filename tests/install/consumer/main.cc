// A downstream program: uses only the installed public headers and library.
#include <flatattn/flatattn.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const int B = 1, N = 37, H = 2, D = 16;
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> nd;
  std::vector<float> q(B * N * H * D), k(q.size()), v(q.size()), out(q.size(), NAN), lse(B * H * N, NAN);
  for (auto* t : {&q, &k, &v})
    for (float& x : *t) x = nd(rng);
  using flatattn::DType;
  using flatattn::TensorView;
  flatattn::ForwardArgs a;
  a.q = TensorView::contiguous(q.data(), DType::f32, {B, N, H, D});
  a.k = TensorView::contiguous(k.data(), DType::f32, {B, N, H, D});
  a.v = TensorView::contiguous(v.data(), DType::f32, {B, N, H, D});
  a.out = TensorView::contiguous(out.data(), DType::f32, {B, N, H, D});
  a.lse = TensorView::contiguous(lse.data(), DType::f32, {B, H, N});
  flatattn::Options o;
  o.causal = true;
  o.return_lse = true;
  const flatattn::Report r = flatattn::forward(a, o);
  // Independent check in double: causal softmax attention.
  double worst = 0;
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < N; ++i) {
      std::vector<double> s(i + 1);
      double m = -INFINITY, sum = 0;
      for (int j = 0; j <= i; ++j) {
        double acc = 0;
        for (int d = 0; d < D; ++d) acc += double(q[(i * H + h) * D + d]) * k[(j * H + h) * D + d];
        s[j] = acc / std::sqrt(double(D));
        m = std::max(m, s[j]);
      }
      for (double& x : s) sum += (x = std::exp(x - m));
      for (int d = 0; d < D; ++d) {
        double o_ref = 0;
        for (int j = 0; j <= i; ++j) o_ref += s[j] / sum * v[(j * H + h) * D + d];
        worst = std::max(worst, std::abs(o_ref - out[(i * H + h) * D + d]));
      }
      worst = std::max(worst, std::abs((m + std::log(sum)) - lse[h * N + i]));
    }
  std::printf("flatattn %s via %s/%s: max error %.3g\n", FLATATTN_VERSION, r.backend.c_str(),
              std::string(flatattn::name(r.dataflow)).c_str(), worst);
  // Invalid input must raise flatattn::Error.
  try {
    a.k.shape[3] = 8;
    flatattn::forward(a, o);
    return 2;
  } catch (const flatattn::Error& e) {
    std::printf("error as expected: %s\n", e.what());
  }
  return worst < 1e-4 ? 0 : 1;
}
