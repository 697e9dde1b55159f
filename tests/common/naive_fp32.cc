#include "tests/common/naive_fp32.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "src/core/mask.h"

namespace flatattn::testing {

namespace {
constexpr double kEps32 = 5.9604644775390625e-08;  // 2^-24, unit roundoff of fp32
}  // namespace

NaiveFp32Grads naive_fp32_backward(const CaseTensors& t, NaiveMethod method) {
  const Case& c = t.c;
  const Options& o = c.options;
  const float scale = o.softmax_scale ? *o.softmax_scale : static_cast<float>(1.0 / std::sqrt(double(c.d)));
  MaskSpec mask;
  mask.bottom_right = o.causal_align == CausalAlign::bottom_right;
  mask.left = o.window.left;
  mask.right = o.causal ? 0 : o.window.right;
  NaiveFp32Grads g;
  g.dq = HostTensor::make(DType::f32, t.dq.shape);
  g.dk = HostTensor::make(DType::f32, t.dk.shape);
  g.dv = HostTensor::make(DType::f32, t.dv.shape);
  const std::int64_t group = c.hq / c.hkv, d = c.d;
  // The inputs as fp32 in logical (row-major) order: HostTensor::at per access would dominate the run time.
  auto floats = [](const HostTensor& x) {
    std::vector<float> f(x.numel());
    for (std::int64_t i = 0; i < x.numel(); ++i) f[i] = float(x.at(i));
    return f;
  };
  const std::vector<float> Q = floats(t.q), K = floats(t.k), V = floats(t.v), dO = floats(t.dout), O = floats(t.out);
  std::int64_t q0 = 0, k0 = 0;
  for (std::int64_t b = 0; b < c.batch; ++b) {
    const std::int64_t nq = c.varlen ? c.seqlens_q[b] : c.nq, nk = c.varlen ? c.seqlens_k[b] : c.nk;
    // Logical element (row n of this sequence, head h, d) of a (B, N, H, D) or (total, H, D) tensor.
    auto at = [&](std::int64_t row0, std::int64_t n_seq, std::int64_t n, std::int64_t h, std::int64_t heads,
                  std::int64_t k) {
      return c.varlen ? ((row0 + n) * heads + h) * d + k : ((b * n_seq + n) * heads + h) * d + k;
    };
    for (std::int64_t hk = 0; hk < c.hkv; ++hk) {
      std::vector<float> gk(nk * d, 0.f), gv(nk * d, 0.f);
      std::vector<double> dk_noise(nk * d, 0.0);
      for (std::int64_t h = hk * group; h < (hk + 1) * group; ++h) {
        std::vector<float> S(nq * nk), T(nq * nk, 0.f), P(nq * nk, 0.f), dS(nq * nk, 0.f);
        std::vector<double> dS_noise(nq * nk, 0.0);
        for (std::int64_t i = 0; i < nq; ++i) {
          float m = -std::numeric_limits<float>::infinity();
          for (std::int64_t j = 0; j < nk; ++j) {
            float acc = 0.f;
            for (std::int64_t k = 0; k < d; ++k)
              acc += Q[at(q0, c.nq, i, h, c.hq, k)] * K[at(k0, c.nk, j, hk, c.hkv, k)];
            float x = scale * acc;
            if (o.softcap > 0) {
              T[i * nk + j] = std::tanh(x / o.softcap);
              x = o.softcap * T[i * nk + j];
            }
            S[i * nk + j] = mask.visible(i, j, nq, nk) ? x : -std::numeric_limits<float>::infinity();
            m = std::max(m, S[i * nk + j]);
          }
          if (m == -std::numeric_limits<float>::infinity()) continue;  // fully masked: P = 0
          float sum = 0.f;
          for (std::int64_t j = 0; j < nk; ++j) sum += (P[i * nk + j] = std::exp(S[i * nk + j] - m));
          const std::int64_t lse_at = c.varlen ? h * t.lse.shape[1] + q0 + i : (b * c.hq + h) * c.nq + i;
          const float lse = float(t.lse.at(lse_at));
          for (std::int64_t j = 0; j < nk; ++j)
            P[i * nk + j] = method == NaiveMethod::lse ? std::exp(S[i * nk + j] - lse) : P[i * nk + j] / sum;
          std::vector<float> dP(nk);
          float Di = 0.f;
          for (std::int64_t j = 0; j < nk; ++j) {
            float acc = 0.f;
            for (std::int64_t k = 0; k < d; ++k)
              acc += dO[at(q0, c.nq, i, h, c.hq, k)] * V[at(k0, c.nk, j, hk, c.hkv, k)];
            dP[j] = acc;
            Di += P[i * nk + j] * acc;
          }
          double abs_di = 0;  // sum_d |dO_id O_id|: the scale of D_i's rounding
          if (method == NaiveMethod::lse) {  // D_i = rowsum(dO o O) with the forward's O
            Di = 0.f;
            for (std::int64_t k = 0; k < d; ++k) {
              const float x = dO[at(q0, c.nq, i, h, c.hq, k)];
              const float y = O[at(q0, c.nq, i, h, c.hq, k)];
              Di += x * y;
              abs_di += std::abs(double(x) * y);
            }
          }
          for (std::int64_t j = 0; j < nk; ++j) {
            float ds = P[i * nk + j] * (dP[j] - Di);
            double abs_dp = 0;  // sum_d |dO_id V_jd|: the scale of dP_ij's rounding
            for (std::int64_t k = 0; k < d; ++k)
              abs_dp += std::abs(dO[at(q0, c.nq, i, h, c.hq, k)] * V[at(k0, c.nk, j, hk, c.hkv, k)]);
            double noise = kEps32 * P[i * nk + j] * (abs_dp + abs_di);
            if (o.softcap > 0) {
              ds *= 1.f - T[i * nk + j] * T[i * nk + j];
              noise *= 1.0 - double(T[i * nk + j]) * T[i * nk + j];
            }
            dS[i * nk + j] = ds;
            dS_noise[i * nk + j] = noise;
          }
        }
        for (std::int64_t i = 0; i < nq; ++i)
          for (std::int64_t k = 0; k < d; ++k) {
            float acc = 0.f;
            double noise = 0;
            for (std::int64_t j = 0; j < nk; ++j) {
              const float kv = K[at(k0, c.nk, j, hk, c.hkv, k)];
              acc += dS[i * nk + j] * kv;
              noise += dS_noise[i * nk + j] * std::abs(kv);
            }
            g.dq.set(at(q0, c.nq, i, h, c.hq, k), scale * acc);
            g.dq_noise = std::max(g.dq_noise, scale * noise);
          }
        for (std::int64_t j = 0; j < nk; ++j)
          for (std::int64_t k = 0; k < d; ++k) {
            float ak = 0.f, av = 0.f;
            double noise = 0;
            for (std::int64_t i = 0; i < nq; ++i) {
              const float qv = Q[at(q0, c.nq, i, h, c.hq, k)];
              ak += dS[i * nk + j] * qv;
              noise += dS_noise[i * nk + j] * std::abs(qv);
              av += P[i * nk + j] * dO[at(q0, c.nq, i, h, c.hq, k)];
            }
            gk[j * d + k] += scale * ak;
            gv[j * d + k] += av;
            dk_noise[j * d + k] += scale * noise;
          }
      }
      for (std::int64_t j = 0; j < nk; ++j)
        for (std::int64_t k = 0; k < d; ++k) {
          g.dk.set(at(k0, c.nk, j, hk, c.hkv, k), gk[j * d + k]);
          g.dk_noise = std::max(g.dk_noise, dk_noise[j * d + k]);
          g.dv.set(at(k0, c.nk, j, hk, c.hkv, k), gv[j * d + k]);
        }
    }
    if (c.varlen) q0 += nq, k0 += nk;
  }
  return g;
}

}  // namespace flatattn::testing
