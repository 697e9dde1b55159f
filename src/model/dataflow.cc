#include "src/model/dataflow.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "flatattn/error.h"

namespace flatattn::model {

namespace {

double ceil_div(double a, double b) { return std::ceil(a / b); }

/// Keys per block of the smallest K/V stream a fused tile keeps on chip (double-buffered K and V).
constexpr double kKvStreamKeys = 8;

/// Energy proxy in joules.
double energy(const Accelerator& acc, double offchip_bytes, double onchip_bytes, double macs, double sfu_ops) {
  const EnergyCosts& e = acc.energy;
  return 1e-12 * (e.offchip_byte * offchip_bytes + e.onchip_byte * onchip_bytes + e.mac * macs + e.sfu_op * sfu_ops);
}

Cost infeasible(std::string why) {
  Cost c;
  c.feasible = false;
  c.infeasible_reason = std::move(why);
  c.runtime_s = INFINITY;
  return c;
}

/// Fills the derived fields (ideal, utilization) of a cost whose counts and runtime are set.
void finish(const Accelerator& acc, const AttnProblem& p, Cost& c) {
  c.flops = 2.0 * p.macs();
  c.ideal_s = p.macs() / acc.macs_per_s();
  c.memory_s = c.offchip_bytes / acc.offchip_bw;
  c.onchip_s = c.onchip_bytes / acc.onchip_bw;
  c.utilization = c.ideal_s / c.runtime_s;
}

/// One double-buffered pipeline of T equal steps: the first step's inputs load before anything starts,
/// the last output drains after; in between each step takes max(work, its transfers). `tail` is the
/// last step (whose prefetchable transfers are already done).
double pipeline(double steps, double first_in_s, double last_out_s, double steady_s, double tail_s) {
  return first_in_s + last_out_s + std::max(0.0, steps - 1) * steady_s + tail_s;
}

std::string fmt_bytes(double b) {
  char s[64];
  if (b >= 1 << 30) std::snprintf(s, sizeof s, "%.3g GiB", b / (1 << 30));
  else if (b >= 1 << 20) std::snprintf(s, sizeof s, "%.3g MiB", b / (1 << 20));
  else std::snprintf(s, sizeof s, "%.4g KiB", b / 1024);
  return s;
}

}  // namespace

std::string_view name(DataflowKind d) {
  switch (d) {
    case DataflowKind::naive: return "naive";
    case DataflowKind::flex: return "flex";
    case DataflowKind::flat: return "flat";
    case DataflowKind::flash: return "flash";
  }
  return "?";
}

DataflowKind parse_dataflow(std::string_view s) {
  for (DataflowKind d : {DataflowKind::naive, DataflowKind::flex, DataflowKind::flat, DataflowKind::flash})
    if (name(d) == s) return d;
  throw Error(Error::Kind::invalid_argument, "dataflow", std::string(s), "unknown dataflow",
              "use naive, flex, flat or flash");
}

std::string_view name(Granularity g) {
  switch (g) {
    case Granularity::M: return "M";
    case Granularity::B: return "B";
    case Granularity::H: return "H";
    case Granularity::R: return "R";
  }
  return "?";
}

UnfusedMapping naive_mapping(const Accelerator& acc, const AttnProblem& p) {
  const double cap = acc.buffer_bytes / p.elem_bytes;
  std::int64_t r = acc.pe_rows, c = acc.pe_cols;
  auto tiling = [&](std::int64_t m, std::int64_t n, std::int64_t k) {
    GemmTiling t;
    t.order = {LoopDim::n, LoopDim::k, LoopDim::m};  // weight (B) stationary, rows of A stream
    t.tm = std::min(m, r);
    t.tn = std::min(n, c);
    t.tk = std::min(k, r);
    return t;
  };
  // Halve the array-sized tiles until all three (double-buffered) fit.
  while ((r > 1 || c > 1) && 2.0 * (3.0 * double(r) * double(c)) > cap) {
    r = std::max<std::int64_t>(1, r / 2);
    c = std::max<std::int64_t>(1, c / 2);
  }
  UnfusedMapping m;
  m.l = tiling(p.nq, p.nk, p.d);
  m.a = tiling(p.nq, p.d, p.nk);
  m.softmax_fused = false;
  return m;
}

Cost cost_unfused(const Accelerator& acc, const AttnProblem& p, const UnfusedMapping& um) {
  const double b = p.elem_bytes, f = acc.freq_hz, cap = acc.buffer_bytes / b;
  const GemmShape L{p.bh(), p.nq, p.nk, p.d}, A{p.bh(), p.nq, p.d, p.nk};
  const GemmTraffic tl = buffer_traffic(L, um.l), ta = buffer_traffic(A, um.a);
  if (tl.buffer_elems > cap)
    return infeasible("L tiles need " + fmt_bytes(tl.buffer_elems * b) + " > buffer " + fmt_bytes(acc.buffer_bytes));
  if (ta.buffer_elems > cap)
    return infeasible("A tiles need " + fmt_bytes(ta.buffer_elems * b) + " > buffer " + fmt_bytes(acc.buffer_bytes));
  if (um.softmax_fused && (std::min(um.l.tn, p.nk) < p.nk || tl.c_reads > 0))
    return infeasible("softmax fused into L needs L output tiles spanning whole rows, written once");

  const ArrayWork wl = array_work(acc, L, um.l.stationarity(), um.l.tm, um.l.tn, um.l.tk);
  const ArrayWork wa = array_work(acc, A, um.a.stationarity(), um.a.tm, um.a.tn, um.a.tk);
  const double logits = p.bh() * double(p.nq) * double(p.nk);
  const double sfu_ops = logits * acc.softmax_ops_per_element;
  const double sfu_s = sfu_ops / (acc.sfu_ops_per_cycle * f);

  // Each operator streams its tiles through a double-buffered pipeline; a cold start loads the first
  // A and B tiles before the array starts.
  auto op_time = [&](const ArrayWork& w, const GemmTraffic& t, const GemmShape& s, const GemmTiling& g,
                     double extra_sfu_s, double extra_onchip) {
    const double tm = double(std::min(g.tm, s.m)), tn = double(std::min(g.tn, s.n)), tk = double(std::min(g.tk, s.k));
    const double first = (tm * tk + tk * tn) * b / acc.offchip_bw;
    return first + std::max({w.cycles / f, t.total() * b / acc.offchip_bw, (w.onchip_elems + extra_onchip) * b / acc.onchip_bw,
                             extra_sfu_s});
  };
  Cost c;
  double runtime = 0;
  double offchip = tl.total() + ta.total(), onchip = wl.onchip_elems + wa.onchip_elems;
  if (um.softmax_fused) {
    runtime += op_time(wl, tl, L, um.l, sfu_s, 2 * logits);
    onchip += 2 * logits;
  } else {
    runtime += op_time(wl, tl, L, um.l, 0, 0);
    // Softmax pass: read L, write P (the 3-pass row softmax keeps one row on chip).
    const double s_off = 2 * logits * b;
    runtime += std::max({sfu_s, s_off / acc.offchip_bw, 3 * logits * b / acc.onchip_bw});
    offchip += 2 * logits;
    onchip += 3 * logits;
  }
  runtime += op_time(wa, ta, A, um.a, 0, 0);

  c.offchip_bytes = offchip * b;
  c.onchip_bytes = onchip * b;
  c.buffer_bytes = std::max(tl.buffer_elems, ta.buffer_elems) * b;
  c.compute_s = (wl.cycles + wa.cycles) / f;
  c.sfu_s = sfu_s;
  c.runtime_s = runtime;
  c.energy_j = energy(acc, c.offchip_bytes, c.onchip_bytes, p.macs(), sfu_ops);
  finish(acc, p, c);
  return c;
}

Cost cost_flat(const Accelerator& acc, const AttnProblem& p, const FlatMapping& m) {
  const double b = p.elem_bytes, f = acc.freq_hz, cap = acc.buffer_bytes / b;
  const double d = double(p.d), nq = double(p.nq), nk = double(p.nk);
  if (m.bx < 1 || m.hx < 1 || m.rx < 1 || p.batch % m.bx != 0 || p.heads % m.hx != 0)
    return infeasible("FLAT tile must divide the problem: Bx | B, Hx | H, Rx >= 1");
  const double bx = double(m.bx), hx = double(m.hx), rx = double(std::min(m.rx, p.nq));
  const std::int64_t group = p.heads / p.kv_heads;
  // K/V heads a tile holds: a tile spanning whole GQA groups shares them.
  const double kvh = (m.hx % group == 0) ? double(m.hx / group) : hx;
  const double groups = double(p.batch / m.bx) * double(p.heads / m.hx);
  const double n_r = ceil_div(nq, rx);

  // Table 1 (elements): Q, O tiles and K, V double-buffered, plus the Rx x N logit tile.
  const double qo_buf = bx * hx * 4 * rx * d;
  const double kv = bx * kvh * 2 * nk * d;  // K and V of the tile's heads, one copy
  const double kv_buf = 2 * kv;
  const double logit = bx * hx * rx * nk;
  const double need = qo_buf + kv_buf + logit;
  // Spilling: Q/O tiles and a minimal double-buffered K/V stream must fit; then the logit tile; what
  // is left holds a fraction phi of K/V resident across the row tiles (the rest is re-streamed).
  const double kv_min = bx * kvh * 4 * std::min(nk, kKvStreamKeys) * d;
  const double avail = cap - qo_buf - kv_min;
  if (avail < 0)
    return infeasible("Q/O tiles and a K/V stream need " + fmt_bytes((qo_buf + kv_min) * b) + " > buffer " +
                      fmt_bytes(acc.buffer_bytes));
  const double logit_on = std::min(logit, avail);
  const double spill = logit - logit_on;  // written and read back once per tile
  const double phi = std::min(1.0, (avail - logit_on + kv_min) / kv_buf);

  // Off-chip elements per group (one (Bx, Hx) block with its n_r row tiles).
  const double qo_traffic = bx * hx * 2 * nq * d;
  const double kv_resident = kv * phi, kv_streamed = kv * (1 - phi) * n_r;
  const double spill_traffic = 2 * spill * n_r;
  const double offchip = groups * (qo_traffic + kv_resident + kv_streamed + spill_traffic);

  // One tile on the array: L (Rx x N, reduction d) then A (Rx x d, reduction N), interleaved.
  const GemmShape L{bx * hx, std::int64_t(rx), p.nk, p.d}, A{bx * hx, std::int64_t(rx), p.d, p.nk};
  const ArrayWork wl = array_work(acc, L, m.l_stat, L.m, L.n, L.k);
  const ArrayWork wa = array_work(acc, A, m.a_stat, A.m, A.n, A.k);
  const double tile_logits = bx * hx * rx * nk;
  const double tile_sfu_ops = tile_logits * acc.softmax_ops_per_element;
  const double tile_onchip = wl.onchip_elems + wa.onchip_elems + 3 * tile_logits;  // softmax: 2 reads, 1 write
  const double steps = groups * n_r;
  const double prefetch = (qo_traffic + kv_resident) / n_r;  // per tile, loaded ahead (double buffering)
  const double streamed = (kv_streamed + spill_traffic) / n_r;
  const double work_s = std::max({(wl.cycles + wa.cycles) / f, tile_sfu_ops / (acc.sfu_ops_per_cycle * f),
                                  tile_onchip * b / acc.onchip_bw});
  const double steady = std::max(work_s, (prefetch + streamed) * b / acc.offchip_bw);
  const double tail = std::max(work_s, streamed * b / acc.offchip_bw);
  const double first_in = (bx * hx * rx * d + kv_resident) * b / acc.offchip_bw;
  const double last_out = bx * hx * rx * d * b / acc.offchip_bw;

  Cost c;
  c.offchip_bytes = offchip * b;
  c.onchip_bytes = steps * tile_onchip * b;
  c.buffer_bytes = need * b;
  c.spilled_bytes = std::max(0.0, need - cap) * b;
  c.compute_s = steps * (wl.cycles + wa.cycles) / f;
  c.sfu_s = steps * tile_sfu_ops / (acc.sfu_ops_per_cycle * f);
  c.runtime_s = pipeline(steps, first_in, last_out, steady, tail);
  c.energy_j = energy(acc, c.offchip_bytes, c.onchip_bytes, p.macs(), steps * tile_sfu_ops);
  finish(acc, p, c);
  return c;
}

Cost cost_flash(const Accelerator& acc, const AttnProblem& p, const FlashMapping& m) {
  const double b = p.elem_bytes, f = acc.freq_hz, cap = acc.buffer_bytes / b;
  const double d = double(p.d), nq = double(p.nq), nk = double(p.nk);
  if (m.br < 1 || m.bc < 1) return infeasible("Flash blocks must be >= 1");
  const double br = double(std::min(m.br, p.nq)), bc = double(std::min(m.bc, p.nk));
  const double n_r = ceil_div(nq, br), n_c = ceil_div(nk, bc);
  // Block state: Q and O blocks, K and V blocks (double-buffered), the Br x Bc logit block, m and l.
  const double need_min = 4 * br * d + 4 * bc * d + br * bc + 2 * br;
  if (need_min > cap)
    return infeasible("Flash block state needs " + fmt_bytes(need_min * b) + " > buffer " + fmt_bytes(acc.buffer_bytes));
  const double kv = 2 * nk * d;  // K and V of one head
  // K/V stay resident across the query blocks of a head when they fit (double-buffered for the next head).
  const double phi = std::clamp((cap - need_min + 4 * bc * d) / (2 * kv), 0.0, 1.0);
  const double per_head = 2 * nq * d + kv * phi + kv * (1 - phi) * n_r;
  const double offchip = p.bh() * per_head;

  const GemmShape L{1, std::int64_t(br), std::int64_t(bc), p.d}, A{1, std::int64_t(br), p.d, std::int64_t(bc)};
  const ArrayWork wl = array_work(acc, L, m.l_stat, L.m, L.n, L.k);
  const ArrayWork wa = array_work(acc, A, m.a_stat, A.m, A.n, A.k);
  // Online softmax per block: the row softmax ops, plus rescaling O (Br x d) and the running m, l.
  const double blk_sfu_ops = br * bc * acc.softmax_ops_per_element + br * d + 2 * br;
  const double blk_onchip = wl.onchip_elems + wa.onchip_elems + 3 * br * bc + 2 * br * d;
  const double steps = p.bh() * n_r * n_c;
  const double prefetch = (2 * nq * d + kv * phi) / (n_r * n_c);
  const double streamed = kv * (1 - phi) / n_c;
  const double work_s = std::max({(wl.cycles + wa.cycles) / f, blk_sfu_ops / (acc.sfu_ops_per_cycle * f),
                                  blk_onchip * b / acc.onchip_bw});
  const double steady = std::max(work_s, (prefetch + streamed) * b / acc.offchip_bw);
  const double tail = std::max(work_s, streamed * b / acc.offchip_bw);
  const double first_in = (br * d + 2 * bc * d) * b / acc.offchip_bw;
  const double last_out = br * d * b / acc.offchip_bw;

  Cost c;
  c.offchip_bytes = offchip * b;
  c.onchip_bytes = steps * blk_onchip * b;
  c.buffer_bytes = (need_min + (2 * kv - 4 * bc * d) * phi) * b;
  c.compute_s = steps * (wl.cycles + wa.cycles) / f;
  c.sfu_s = steps * blk_sfu_ops / (acc.sfu_ops_per_cycle * f);
  c.runtime_s = pipeline(steps, first_in, last_out, steady, tail);
  c.energy_j = energy(acc, c.offchip_bytes, c.onchip_bytes, p.macs(), steps * blk_sfu_ops);
  finish(acc, p, c);
  return c;
}

}  // namespace flatattn::model
