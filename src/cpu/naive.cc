// Naive attention: the N x N logits of a slice are materialized in fp32 (see naive.h).
#define EIGEN_DONT_PARALLELIZE  // parallel over (batch, head) slices instead; each GEMM runs on one thread
#include "src/cpu/naive.h"

#include "src/cpu/sparse_tile.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "src/cpu/pack.h"
#include "src/cpu/schedule.h"
#include "src/cpu/sparse_tile.h"
#include "src/cpu/score.h"
#include "src/cpu/tile.h"

namespace flatattn::cpu {

namespace {
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr float kInf = std::numeric_limits<float>::infinity();

void load(const Problem& p, const Rows& src, std::int64_t n, Matrix& m) {
  m.resize(n, p.d);
  for (std::int64_t i = 0; i < n; ++i) load_row(src, i, p.d, p.d, 1.f, m.row(i).data());
}
}  // namespace

std::size_t naive_workspace_bytes(const Problem& p) {
  const auto threads = static_cast<std::size_t>(resolve_threads(p, static_cast<std::size_t>(p.batch * p.hq)));
  const auto nq = static_cast<std::size_t>(p.nq), nk = static_cast<std::size_t>(p.nk);
  const auto d = static_cast<std::size_t>(p.d);
  return threads * sizeof(float) * (nq * nk + 2 * nq * d + 2 * nk * d);
}

void naive_forward(const Problem& p, const FwdTensors& t) {
  const std::int64_t items = p.batch * p.hq;
  const int threads = resolve_threads(p, static_cast<std::size_t>(std::max<std::int64_t>(items, 1)));
  const VariantData vd = cpu_variant_data(p);
#pragma omp parallel num_threads(threads)
  {
    Matrix q, k, v, s, o;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t it = 0; it < items; ++it) {
      const std::int64_t b = it / p.hq, h = it % p.hq, hk = h / p.group();
      const SeqSpan sp = seq_span(p, b);
      if (sp.nq == 0) continue;
      load(p, rows_of(p, t.q, t.sq, b, sp.q0, h), sp.nq, q);
      load(p, rows_of(p, t.k, t.sk, b, sp.k0, hk), sp.nk, k);
      load(p, rows_of(p, t.v, t.sv, b, sp.k0, hk), sp.nk, v);
      s.noalias() = p.scale * (q * k.transpose());  // Nq x Nk, materialized
      // The variant's score hook on each scaled logit (scalar: this path is the materialized baseline).
      visit_variant(variant_of(p.variant), [&]<class V>() {
        if constexpr (V::Score::kActive)
          for (std::int64_t i = 0; i < sp.nq; ++i)
            for (std::int64_t j = 0; j < sp.nk; ++j)
              s(i, j) = V::Score::template score<FloatMath>(s(i, j), vd, score_at(b, h, hk, i, j, sp));
      });
      for (std::int64_t i = 0; i < sp.nq; ++i) {
        float* row = s.row(i).data();
        const std::int64_t lo = p.mask.lo(i, sp.nq, sp.nk), hi = std::min(p.mask.hi(i, sp.nq, sp.nk), sp.nk - 1);
        if (p.sparse.on) SparseRows(p, b, h, sp, i, 1).mask(1, 0, sp.nk, row, sp.nk, {0, sp.nk - 1});
        float m = -kInf;
        for (std::int64_t j = 0; j < sp.nk; ++j) {
          row[j] = (!p.sparse.on && (j < lo || j > hi)) ? -kInf : row[j];
          m = std::max(m, row[j]);
        }
        float sum = 0.f;
        for (std::int64_t j = 0; j < sp.nk; ++j) sum += (row[j] = m == -kInf ? 0.f : std::exp(row[j] - m));
        float inv = sum > 0.f ? 1.f / sum : 0.f;
        float lse = sum > 0.f ? m + std::log(sum) : -kInf;
        if (t.sinks != nullptr) add_sink(t.sinks[h], inv, lse);
        for (std::int64_t j = 0; j < sp.nk; ++j) row[j] *= inv;
        if (p.variant.dropout_p > 0.f)  // dropout on the normalized P (the LSE above is the undropped one)
          for (std::int64_t j = 0; j < sp.nk; ++j)
            row[j] *= DropoutProb::factor(vd, static_cast<int>(b), static_cast<int>(h), static_cast<int>(i),
                                          static_cast<int>(j));
        if (t.lse) t.lse[row_offset(p, t.slse, b, sp.q0, i, h)] = lse;
      }
      o.noalias() = s * v;
      for (std::int64_t i = 0; i < sp.nq; ++i)
        store_row(t.o, p.dtype, row_offset(p, t.so, b, sp.q0, i, h), o.row(i).data(), p.d, 1.f);
    }
  }
}

}  // namespace flatattn::cpu
