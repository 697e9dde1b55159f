#include "src/cpu/workspace.h"

#include <algorithm>

#include "src/cpu/amx/amx.h"
#include "src/cpu/gemm.h"
#include "src/cpu/schedule.h"

namespace flatattn::cpu {

ForwardScratch carve_forward(Carver& c, const Problem& p, const ForwardPlan& plan) {
  const std::size_t dp = static_cast<std::size_t>(padded_d(p.d));
  const std::size_t nk = static_cast<std::size_t>(round_up(std::max<std::int64_t>(p.nk, 1), kPanel));
  const std::size_t bm = static_cast<std::size_t>(plan.block_m);
  const std::size_t cols = plan.dataflow == Dataflow::flat ? nk : static_cast<std::size_t>(plan.block_n);
  ForwardScratch w{};
  const MatmulPath path = forward_matmul(p);
  if (path != MatmulPath::fp32) {  // bf16 operands (AMX or AVX512-BF16): two per float of the carver
    const std::size_t kd = static_cast<std::size_t>(amx_kd(p.d));
    const std::size_t rows = static_cast<std::size_t>(round_up(plan.block_m, kAmxRows));
    const auto half = [&](std::size_t n) { return reinterpret_cast<std::uint16_t*>(c.take((n + 1) / 2)); };
    w.amx = true;
    w.dpbf16 = path == MatmulPath::avx512bf16;
    int a[9], b[9];
    w.split = split_policy(p);
    const std::size_t pieces = static_cast<std::size_t>(w.split.pieces);
    w.kq = static_cast<std::int64_t>(kd) * split_pairs(w.split, a, b);
    w.vb_plane = static_cast<std::int64_t>(nk * dp);
    w.pb_plane = static_cast<std::int64_t>(rows * cols);
    w.kb = half(nk * static_cast<std::size_t>(w.kq));
    w.vb = half(nk * dp * pieces);
    w.qb = half(rows * static_cast<std::size_t>(w.kq));
    w.pb = half(rows * cols * pieces);
    w.o = c.take(rows * dp);
    w.s = c.take(rows * cols);
    w.m = c.take(rows);
    w.l = c.take(rows);
    return w;
  }
  w.kt = c.take(nk * dp);
  w.v = c.take(nk * dp);
  w.q = c.take(bm * dp);
  w.o = c.take(bm * dp);
  w.s = c.take(bm * cols);
  w.m = c.take(bm);
  w.l = c.take(bm);
  return w;
}

std::size_t forward_tiles(const Problem& p, int block_m) {
  std::size_t n = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const SeqSpan sp = seq_span(p, b);
    n += static_cast<std::size_t>((sp.nq + block_m - 1) / block_m * p.hq);
  }
  return n;
}

std::size_t workspace_bytes(const Problem& p, Dataflow dataflow) {
  const ForwardPlan plan = plan_forward(p, dataflow);
  Carver c;
  carve_forward(c, p, plan);
  const int threads = resolve_threads(p, forward_tiles(p, plan.block_m));
  return c.floats() * sizeof(float) * static_cast<std::size_t>(threads);
}

}  // namespace flatattn::cpu
