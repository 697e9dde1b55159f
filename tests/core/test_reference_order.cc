// The oracle's sums are those of the element-wise definition: every product summed in the naive loop's order
// (a dot product over ascending d, P V and dS K over ascending key j, dK and dV over ascending query row i,
// zeros of P and dS skipped), every rounding of Precision::input at the same step. src/reference computes
// them on converted rows and key panels (rows.h); its outputs must equal, bit for bit, the element-wise loops
// written out here from the definition (causal, bottom-right: rows with few keys, partial key panels; Nk and
// D not multiples of the panel width). f32 inputs: their products are not exact in a double sum, so another
// order shows in the last bits; f16 inputs: Precision::input rounds to f16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "src/check/case.h"
#include "src/check/host_tensor.h"
#include "src/core/half.h"
#include "src/reference/reference.h"

using namespace flatattn;
using namespace flatattn::check;

namespace {

/// One (b = 0, h) of a case's (B, N, H, D) tensor as n x D doubles.
std::vector<double> head_rows(const HostTensor& t, std::int64_t n, std::int64_t heads, std::int64_t h, std::int64_t d) {
  std::vector<double> r(static_cast<std::size_t>(n * d));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t e = 0; e < d; ++e) r[i * d + e] = t.at((i * heads + h) * d + e);
  return r;
}

struct Loops {
  bool round;  ///< Precision::input
  DType dt;
  [[nodiscard]] double acc(double a, double x) const {
    return round ? static_cast<double>(static_cast<float>(a + x)) : a + x;
  }
  [[nodiscard]] double r(double x) const { return round ? round_to(dt, x) : x; }
};

/// Element-wise attention of one head (causal bottom-right): P (rounded as the oracle stores it) and LSE.
void probabilities(const Loops& L, const std::vector<double>& q, const std::vector<double>& k, std::int64_t nq,
                   std::int64_t nk, std::int64_t d, double scale, std::vector<double>& P, std::vector<double>& lse) {
  const double inf = std::numeric_limits<double>::infinity();
  P.assign(static_cast<std::size_t>(nq * nk), -inf);
  lse.assign(static_cast<std::size_t>(nq), -inf);
  for (std::int64_t i = 0; i < nq; ++i) {
    for (std::int64_t j = 0; j <= i + nk - nq && j < nk; ++j) {
      double s = 0;
      for (std::int64_t e = 0; e < d; ++e) s = L.acc(s, q[i * d + e] * k[j * d + e]);
      P[i * nk + j] = L.r(scale * s);
    }
    double m = -inf;
    for (std::int64_t j = 0; j < nk; ++j) m = std::max(m, P[i * nk + j]);
    if (m == -inf) {
      for (std::int64_t j = 0; j < nk; ++j) P[i * nk + j] = 0;
      continue;
    }
    double sum = 0;
    for (std::int64_t j = 0; j < nk; ++j) sum += (P[i * nk + j] = std::exp(P[i * nk + j] - m));
    for (std::int64_t j = 0; j < nk; ++j) P[i * nk + j] /= sum;
    lse[i] = m + std::log(sum);
    for (std::int64_t j = 0; j < nk; ++j) P[i * nk + j] = L.r(P[i * nk + j]);
  }
}

/// Elements whose bits differ, and the first of them.
struct Mismatches {
  std::int64_t count = 0, checked = 0;
  std::string first;
  void check(double want, double got, const std::string& what) {
    ++checked;
    if (std::memcmp(&want, &got, sizeof(double)) == 0) return;
    if (count++ > 0) return;
    std::ostringstream os;
    os << what << ": " << std::setprecision(17) << want << " (loops) vs " << got << " (oracle)";
    first = os.str();
  }
};

class ReferenceOrder : public ::testing::TestWithParam<std::tuple<DType, ref::Precision>> {};

TEST_P(ReferenceOrder, ForwardAndBackwardEqualTheElementWiseLoops) {
  Case c;
  const auto [dtype, precision] = GetParam();
  c.dtype = dtype;
  c.nq = 29, c.nk = 45, c.hq = 2, c.hkv = 1, c.d = 19;
  c.options.causal = true;
  c.options.return_lse = true;
  const CaseTensors t = make_case(c, 20261207, /*with_backward=*/true);
  const Loops L{precision == ref::Precision::input, c.dtype};
  const double scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.d)));  // the default scale, as Problem keeps it
  const std::int64_t nq = c.nq, nk = c.nk, d = c.d;

  // The oracle into f64 outputs (kept at full precision, so every bit of the rounded-or-not value shows).
  HostTensor out = HostTensor::make(DType::f64, t.out.shape), lse = HostTensor::make(DType::f64, t.lse.shape);
  ForwardArgs fa = t.forward_args();
  fa.out = out.view(), fa.lse = lse.view();
  ref::forward(fa, c.options, precision);
  HostTensor dq = HostTensor::make(DType::f64, t.q.shape), dk = HostTensor::make(DType::f64, t.k.shape),
             dv = HostTensor::make(DType::f64, t.v.shape);
  BackwardArgs ba = t.backward_args();
  ba.dq = dq.view(), ba.dk = dk.view(), ba.dv = dv.view();
  ref::backward(ba, c.options, precision);

  Mismatches bad;
  const std::vector<double> k = head_rows(t.k, nk, 1, 0, d), v = head_rows(t.v, nk, 1, 0, d);
  std::vector<double> gk(static_cast<std::size_t>(nk * d), 0.0), gv(gk);
  for (std::int64_t h = 0; h < c.hq; ++h) {
    const std::vector<double> q = head_rows(t.q, nq, c.hq, h, d), dout = head_rows(t.dout, nq, c.hq, h, d);
    std::vector<double> P, l;
    probabilities(L, q, k, nq, nk, d, scale, P, l);
    for (std::int64_t i = 0; i < nq; ++i) {
      bad.check(l[i], lse.at(h * nq + i), "lse h" + std::to_string(h) + " i" + std::to_string(i));
      for (std::int64_t e = 0; e < d; ++e) {
        double o = 0;
        for (std::int64_t j = 0; j < nk; ++j)
          if (P[i * nk + j] != 0) o = L.acc(o, P[i * nk + j] * v[j * d + e]);
        bad.check(L.r(o), out.at((i * c.hq + h) * d + e), "out h" + std::to_string(h) + " i" + std::to_string(i));
      }
    }
    // dP = dO V^T where P != 0, D_i = sum_j P dP, dS = P (dP - D_i) scaled; dQ = dS K.
    std::vector<double> dS(static_cast<std::size_t>(nq * nk), 0.0);
    for (std::int64_t i = 0; i < nq; ++i) {
      double Di = 0;
      std::vector<double> dP(static_cast<std::size_t>(nk), 0.0);
      for (std::int64_t j = 0; j < nk; ++j) {
        if (P[i * nk + j] == 0) continue;
        double s = 0;
        for (std::int64_t e = 0; e < d; ++e) s = L.acc(s, dout[i * d + e] * v[j * d + e]);
        dP[j] = L.r(s);
        Di += P[i * nk + j] * dP[j];
      }
      for (std::int64_t j = 0; j < nk; ++j) dS[i * nk + j] = L.r(L.r(P[i * nk + j] * (dP[j] - Di)) * scale);
      for (std::int64_t e = 0; e < d; ++e) {
        double g = 0;
        for (std::int64_t j = 0; j < nk; ++j)
          if (dS[i * nk + j] != 0) g = L.acc(g, dS[i * nk + j] * k[j * d + e]);
        bad.check(L.r(g), dq.at((i * c.hq + h) * d + e), "dq h" + std::to_string(h) + " i" + std::to_string(i));
      }
    }
    // dK, dV: over the group's heads in order, then rows in ascending i.
    for (std::int64_t j = 0; j < nk; ++j)
      for (std::int64_t i = 0; i < nq; ++i)
        for (std::int64_t e = 0; e < d; ++e) {
          if (P[i * nk + j] != 0) gv[j * d + e] = L.acc(gv[j * d + e], P[i * nk + j] * dout[i * d + e]);
          if (dS[i * nk + j] != 0) gk[j * d + e] = L.acc(gk[j * d + e], dS[i * nk + j] * q[i * d + e]);
        }
  }
  for (std::int64_t j = 0; j < nk; ++j)
    for (std::int64_t e = 0; e < d; ++e) {
      bad.check(L.r(gk[j * d + e]), dk.at(j * d + e), "dk j" + std::to_string(j));
      bad.check(L.r(gv[j * d + e]), dv.at(j * d + e), "dv j" + std::to_string(j));
    }
  EXPECT_EQ(bad.count, 0) << "of " << bad.checked << " values; first: " << bad.first;
  EXPECT_EQ(bad.checked, nq * c.hq * (1 + 2 * d) + 2 * nk * d);  // lse, out, dq; dk, dv
}

INSTANTIATE_TEST_SUITE_P(Precisions, ReferenceOrder,
                         ::testing::Combine(::testing::Values(DType::f32, DType::f16),
                                            ::testing::Values(ref::Precision::f64, ref::Precision::input)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == DType::f32 ? "f32_" : "f16_") +
                                  (std::get<1>(info.param) == ref::Precision::f64 ? "f64" : "input");
                         });

}  // namespace
