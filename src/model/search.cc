#include "src/model/search.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "flatattn/error.h"

namespace flatattn::model {

namespace {

/// Powers of two from lo below x, and x itself.
std::vector<std::int64_t> tile_candidates(std::int64_t x, std::int64_t lo) {
  std::vector<std::int64_t> v;
  for (std::int64_t t = lo; t < x; t *= 2) v.push_back(t);
  v.push_back(x);
  return v;
}

std::vector<std::int64_t> divisors(std::int64_t x) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = 1; i <= x; ++i)
    if (x % i == 0) v.push_back(i);
  return v;
}

constexpr std::array<std::array<LoopDim, 3>, 6> kOrders{{{LoopDim::m, LoopDim::n, LoopDim::k},
                                                          {LoopDim::n, LoopDim::m, LoopDim::k},
                                                          {LoopDim::n, LoopDim::k, LoopDim::m},
                                                          {LoopDim::k, LoopDim::n, LoopDim::m},
                                                          {LoopDim::m, LoopDim::k, LoopDim::n},
                                                          {LoopDim::k, LoopDim::m, LoopDim::n}}};
constexpr std::array<Stationarity, 3> kStats{Stationarity::output, Stationarity::weight, Stationarity::input};

/// Runtimes within this relative margin count as a tie, broken by off-chip traffic, then energy: a
/// compute-bound point has many equally fast mappings and the one moving the fewest bytes is reported.
constexpr double kTie = 1e-3;

/// a strictly better than b.
bool better(const Cost& a, const Cost& b) {
  if (!a.feasible) return false;
  if (!b.feasible) return true;
  if (a.runtime_s < b.runtime_s * (1 - kTie)) return true;
  if (b.runtime_s < a.runtime_s * (1 - kTie)) return false;
  if (a.offchip_bytes != b.offchip_bytes) return a.offchip_bytes < b.offchip_bytes;
  if (a.energy_j != b.energy_j) return a.energy_j < b.energy_j;
  return a.runtime_s < b.runtime_s;
}

void consider(const Accelerator& acc, const AttnProblem& p, const Mapping& m, Evaluated& best) {
  const Cost c = cost_of(acc, p, m);
  ++best.mappings_costed;
  if (best.mappings_costed == 1 || better(c, best.cost)) {
    best.mapping = m;
    best.cost = c;
  }
}

/// All tilings of one GEMM (loop orders x tile sizes).
template <class F>
void for_each_tiling(std::int64_t m, std::int64_t n, std::int64_t k, const MapSpace& space, F&& f) {
  const auto cm = tile_candidates(m, 8), cn = tile_candidates(n, 8), ck = tile_candidates(k, 8);
  for (const auto& order : kOrders) {
    GemmTiling probe;
    probe.order = order;
    if (!space.allows(probe.stationarity())) continue;
    for (std::int64_t tm : cm)
      for (std::int64_t tn : cn)
        for (std::int64_t tk : ck) {
          GemmTiling t;
          t.order = order;
          t.tm = tm;
          t.tn = tn;
          t.tk = tk;
          f(t);
        }
  }
}

Evaluated search_flex(const Accelerator& acc, const AttnProblem& p, const MapSpace& space) {
  // Runtime is L (+ softmax) plus A: the two are searched independently, each against the other's
  // naive tiling, then combined.
  const UnfusedMapping ref = naive_mapping(acc, p);
  Evaluated best_l, best_a;
  for_each_tiling(p.nq, p.nk, p.d, space, [&](const GemmTiling& t) {
    for (bool fused : {false, true}) {
      Mapping m;
      m.dataflow = DataflowKind::flex;
      m.unfused = ref;
      m.unfused.l = t;
      m.unfused.softmax_fused = fused;
      consider(acc, p, m, best_l);
    }
  });
  for_each_tiling(p.nq, p.d, p.nk, space, [&](const GemmTiling& t) {
    Mapping m;
    m.dataflow = DataflowKind::flex;
    m.unfused = ref;
    m.unfused.a = t;
    consider(acc, p, m, best_a);
  });
  Evaluated e;
  e.mapping.dataflow = DataflowKind::flex;
  e.mapping.unfused = best_l.mapping.unfused;
  e.mapping.unfused.a = best_a.mapping.unfused.a;
  e.cost = cost_of(acc, p, e.mapping);
  e.mappings_costed = best_l.mappings_costed + best_a.mappings_costed + 1;
  return e;
}

void flat_tiles(const AttnProblem& p, Granularity g, const MapSpace& space, std::vector<FlatMapping>& out) {
  auto push = [&](std::int64_t bx, std::int64_t hx, std::int64_t rx) {
    for (Stationarity ls : kStats)
      for (Stationarity as : kStats)
        if (space.allows(ls) && space.allows(as)) out.push_back(FlatMapping{g, bx, hx, rx, ls, as});
  };
  switch (g) {
    case Granularity::M: push(p.batch, p.heads, p.nq); break;
    case Granularity::B:
      for (std::int64_t bx : divisors(p.batch))
        if (bx < p.batch) push(bx, p.heads, p.nq);
      break;
    case Granularity::H:
      for (std::int64_t hx : divisors(p.heads))
        if (hx < p.heads || p.batch == 1) push(1, hx, p.nq);
      break;
    case Granularity::R:
      for (std::int64_t rx : tile_candidates(p.nq, 1))
        if (rx < p.nq) push(1, 1, rx);
      break;
  }
}

}  // namespace

bool MapSpace::allows(Stationarity s) const {
  return s == Stationarity::output ? output : s == Stationarity::weight ? weight : input;
}

std::string_view MapSpace::name() const {
  if (output && weight && input) return "full";
  if (output && weight && !input) return "paper";
  return "custom";
}

MapSpace parse_mapspace(std::string_view s) {
  if (s == "full") return MapSpace::full();
  if (s == "paper") return MapSpace::paper();
  throw Error(Error::Kind::invalid_argument, "map space", std::string(s), "unknown map space",
              "use full (output, weight and input stationary) or paper (output and weight, as FLAT's search)");
}

std::string Mapping::describe() const {
  switch (dataflow) {
    case DataflowKind::naive:
    case DataflowKind::flex:
      return "L: " + unfused.l.describe() + (unfused.softmax_fused ? " +softmax" : "") + " | A: " + unfused.a.describe();
    case DataflowKind::flat:
      return std::string(name(flat.gran)) + "-gran Bx=" + std::to_string(flat.bx) + " Hx=" + std::to_string(flat.hx) +
             " Rx=" + std::to_string(flat.rx) + " L:" + std::string(name(flat.l_stat)) + " A:" +
             std::string(name(flat.a_stat));
    case DataflowKind::flash:
      return "Br=" + std::to_string(flash.br) + " Bc=" + std::to_string(flash.bc) + " L:" +
             std::string(name(flash.l_stat)) + " A:" + std::string(name(flash.a_stat));
  }
  return "?";
}

Cost cost_of(const Accelerator& acc, const AttnProblem& p, const Mapping& m) {
  switch (m.dataflow) {
    case DataflowKind::naive:
    case DataflowKind::flex: return cost_unfused(acc, p, m.unfused);
    case DataflowKind::flat: return cost_flat(acc, p, m.flat);
    case DataflowKind::flash: return cost_flash(acc, p, m.flash);
  }
  return {};
}

Evaluated best_flat(const Accelerator& acc, const AttnProblem& p, Granularity only, const MapSpace& space) {
  std::vector<FlatMapping> tiles;
  flat_tiles(p, only, space, tiles);
  Evaluated best;
  best.mapping.dataflow = DataflowKind::flat;
  best.cost.feasible = false;
  best.cost.runtime_s = INFINITY;
  best.cost.infeasible_reason = "no " + std::string(name(only)) + "-gran tile for this problem";
  for (const FlatMapping& t : tiles) {
    Mapping m;
    m.dataflow = DataflowKind::flat;
    m.flat = t;
    consider(acc, p, m, best);
  }
  return best;
}

Evaluated best_mapping(const Accelerator& acc, const AttnProblem& p, DataflowKind dataflow, const MapSpace& space) {
  Evaluated best;
  switch (dataflow) {
    case DataflowKind::naive: {
      Mapping m;
      m.dataflow = DataflowKind::naive;
      m.unfused = naive_mapping(acc, p);
      consider(acc, p, m, best);
      return best;
    }
    case DataflowKind::flex: return search_flex(acc, p, space);
    case DataflowKind::flat:
      for (Granularity g : {Granularity::M, Granularity::B, Granularity::H, Granularity::R}) {
        Evaluated e = best_flat(acc, p, g, space);
        const std::int64_t n = best.mappings_costed + e.mappings_costed;
        if (best.mappings_costed == 0 || better(e.cost, best.cost)) best = e;
        best.mappings_costed = n;
      }
      return best;
    case DataflowKind::flash:
      for (std::int64_t br : tile_candidates(p.nq, 16))
        for (std::int64_t bc : tile_candidates(p.nk, 16))
          for (Stationarity ls : kStats)
            for (Stationarity as : kStats) {
              if (!space.allows(ls) || !space.allows(as)) continue;
              Mapping m;
              m.dataflow = DataflowKind::flash;
              m.flash = FlashMapping{br, bc, ls, as};
              consider(acc, p, m, best);
            }
      return best;
  }
  return best;
}

AttnProblem attn_problem(const Workload& w, std::int64_t n) {
  AttnProblem p;
  p.batch = w.batch;
  p.heads = w.heads;
  p.kv_heads = w.kv_heads;
  p.nq = p.nk = n;
  p.d = w.head_dim;
  p.elem_bytes = w.elem_bytes();
  return p;
}

FcCost best_fc(const Accelerator& acc, const Workload& w, std::int64_t n, const MapSpace& space) {
  const std::int64_t tokens = w.batch * n, qd = w.heads * w.head_dim, kvd = w.kv_heads * w.head_dim;
  const std::array<GemmShape, 6> ops{{{1, tokens, qd, w.d_model},
                                      {1, tokens, kvd, w.d_model},
                                      {1, tokens, kvd, w.d_model},
                                      {1, tokens, w.d_model, qd},
                                      {1, tokens, w.ffn, w.d_model},
                                      {1, tokens, w.d_model, w.ffn}}};
  const double b = w.elem_bytes(), f = acc.freq_hz, cap = acc.buffer_bytes / b;
  FcCost total;
  for (const GemmShape& g : ops) {
    if (g.n == 0 || g.k == 0) continue;
    double best_t = INFINITY, best_bytes = 0, best_e = 0;
    for_each_tiling(g.m, g.n, g.k, space, [&](const GemmTiling& t) {
      const GemmTraffic tr = buffer_traffic(g, t);
      if (tr.buffer_elems > cap) return;
      const ArrayWork w_ = array_work(acc, g, t.stationarity(), t.tm, t.tn, t.tk);
      const double time = std::max({w_.cycles / f, tr.total() * b / acc.offchip_bw, w_.onchip_elems * b / acc.onchip_bw});
      if (time < best_t) {
        best_t = time;
        best_bytes = tr.total() * b;
        best_e = 1e-12 * (acc.energy.offchip_byte * best_bytes + acc.energy.onchip_byte * w_.onchip_elems * b +
                          acc.energy.mac * macs(g));
      }
    });
    total.flops += 2 * macs(g);
    total.offchip_bytes += best_bytes;
    total.runtime_s += best_t;
    total.energy_j += best_e;
  }
  return total;
}

}  // namespace flatattn::model
