#include "src/model/gemm.h"

#include <algorithm>

namespace flatattn::model {

namespace {

double ceil_div(double a, double b) { return double(std::int64_t((a + b - 1) / b)); }

/// Spatial folds of a dimension of size x cut into tiles of t, each tile folded onto p PEs.
double folds(std::int64_t x, std::int64_t t, int p) {
  t = std::max<std::int64_t>(1, std::min(t, x));
  const std::int64_t full = x / t, rem = x % t;
  return double(full) * ceil_div(double(t), p) + (rem ? ceil_div(double(rem), p) : 0.0);
}

char dim_char(LoopDim d) { return d == LoopDim::m ? 'm' : d == LoopDim::n ? 'n' : 'k'; }

}  // namespace

std::string_view name(Stationarity s) {
  switch (s) {
    case Stationarity::output: return "os";
    case Stationarity::weight: return "ws";
    case Stationarity::input: return "is";
  }
  return "?";
}

Stationarity GemmTiling::stationarity() const {
  switch (order[2]) {
    case LoopDim::k: return Stationarity::output;
    case LoopDim::m: return Stationarity::weight;
    case LoopDim::n: return Stationarity::input;
  }
  return Stationarity::output;
}

std::string GemmTiling::describe() const {
  std::string s(name(stationarity()));
  s += ' ';
  for (int i = 0; i < 3; ++i) {
    s += dim_char(order[i]);
    if (i < 2) s += '-';
  }
  s += ' ' + std::to_string(tm) + 'x' + std::to_string(tn) + 'x' + std::to_string(tk);
  return s;
}

GemmTraffic buffer_traffic(const GemmShape& g, const GemmTiling& t) {
  const double m = double(g.m), n = double(g.n), k = double(g.k);
  const std::int64_t tm = std::min(t.tm, g.m), tn = std::min(t.tn, g.n), tk = std::min(t.tk, g.k);
  auto trips = [&](LoopDim d) {
    return d == LoopDim::m ? ceil_div(m, double(tm)) : d == LoopDim::n ? ceil_div(n, double(tn)) : ceil_div(k, double(tk));
  };
  // Re-fetch multiplier of an operand depending on dims (d1, d2): the trip counts of the loops it does
  // not depend on that sit outside the innermost loop it does depend on (a loop of one trip never
  // changes the tile, so it does not count as that innermost loop).
  auto refetch = [&](LoopDim d1, LoopDim d2) {
    int inner = -1;
    for (int i = 0; i < 3; ++i)
      if ((t.order[i] == d1 || t.order[i] == d2) && trips(t.order[i]) > 1) inner = i;
    double mult = 1;
    for (int i = 0; i < inner; ++i)
      if (t.order[i] != d1 && t.order[i] != d2) mult *= trips(t.order[i]);
    return mult;
  };
  GemmTraffic r;
  r.a_reads = g.instances * m * k * refetch(LoopDim::m, LoopDim::k);
  r.b_reads = g.instances * k * n * refetch(LoopDim::k, LoopDim::n);
  const double visits = refetch(LoopDim::m, LoopDim::n);  // > 1 only when k sits outside: partial sums
  r.c_writes = g.instances * m * n * visits;
  r.c_reads = g.instances * m * n * (visits - 1);
  r.buffer_elems = 2.0 * (double(tm) * double(tk) + double(tk) * double(tn) + double(tm) * double(tn));
  return r;
}

ArrayWork array_work(const Accelerator& acc, const GemmShape& g, Stationarity s, std::int64_t tm, std::int64_t tn,
                     std::int64_t tk) {
  const int pr = acc.pe_rows, pc = acc.pe_cols;
  const double G = g.instances, m = double(g.m), n = double(g.n), k = double(g.k);
  ArrayWork w;
  switch (s) {
    case Stationarity::output: {  // C(m, n) in the PEs; A enters by rows, B by columns; k streams
      const double fm = folds(g.m, tm, pr), fn = folds(g.n, tn, pc);
      w.cycles = G * fm * fn * k;
      w.onchip_elems = G * (m * k * fn + k * n * fm + m * n);
      break;
    }
    case Stationarity::weight: {  // B(k, n) in the PEs; A streams m rows through; partial sums leave
      const double fk = folds(g.k, tk, pr), fn = folds(g.n, tn, pc);
      w.cycles = G * fk * fn * m;
      w.onchip_elems = G * (k * n + m * k * fn + m * n * (2 * fk - 1));
      break;
    }
    case Stationarity::input: {  // A(k, m) in the PEs; B streams n columns through
      const double fk = folds(g.k, tk, pr), fm = folds(g.m, tm, pc);
      w.cycles = G * fk * fm * n;
      w.onchip_elems = G * (m * k + k * n * fm + m * n * (2 * fk - 1));
      break;
    }
  }
  w.cycles += double(pr + pc);  // fill and drain once per operator invocation (folds pipeline)
  return w;
}

}  // namespace flatattn::model
