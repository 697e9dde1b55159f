#include "src/model/gpu_kernel.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <queue>
#include <vector>

#include "flatattn/error.h"
#include "src/core/tile_walk.h"
#include "src/model/sparse_blocks.h"

namespace flatattn::model {

namespace {

/// List scheduling is simulated up to this many CTAs (and 8 full waves); beyond, the makespan is
/// total / SMs + the longest CTA, within a few percent there and O(1) (plan() stays well under 1 ms).
constexpr std::int64_t kSimulateCtaLimit = std::int64_t(1) << 14;

KernelPrediction infeasible(KernelPrediction p, std::string why) {
  p.feasible = false;
  p.reason = std::move(why);
  p.time_s = INFINITY;
  return p;
}

/// Work of the CTAs of one query block (identical for every batch x head).
struct BlockWork {
  double cycles = 0;           ///< SM cycles at the full SM rate, overhead excluded
  double tensor = 0, softmax = 0, smem = 0;
  double l2_bytes = 0;
};

/// Tiles a persistent variant's walk is simulated for (the walk is O(tiles)); beyond, the closed form below.
constexpr std::int64_t kWalkTileLimit = std::int64_t(1) << 20;

/// The schedule of a persistent variant (KernelVariant::persistent): min(SMs, units) CTAs (one per SM, as the kernel
/// launches them), each walking its tiles by
/// src/core/tile_walk.h (the kernel's own walk: static stride, causal pairs), tile t of TileCoord's order being query
/// block n_m - 1 - t % n_m of its head. A CTA costs its tiles' cycles, cta_overhead_cycles once (the first tile's fill,
/// the last one's epilogue) and persistent_tile_cycles for every further tile; the call lasts as long as its longest CTA.
double persistent_schedule_s(const Gpu& gpu, const GpuPath& cal, const KernelVariant& v, const AttnShape& s,
                             const std::vector<BlockWork>& work, std::int64_t bh) {
  const int n_m = int(work.size());
  const std::int64_t tiles = std::int64_t(n_m) * bh;
  const double per_tile = cal.persistent_tile_cycles >= 0 ? cal.persistent_tile_cycles : cal.cta_overhead_cycles;
  const double occ = std::min(1.0, double(v.warps) / cal.warps_to_saturate);  // one CTA per SM (a persistent grid)
  const bool grows = s.mask().right >= 0 && s.mask().left < 0;  // causal-like, as launch_ws.cuh asks
  const int cap = gpu.sms;  // the kernel's grid cap (launch_ws.cuh: the SM count)
  double longest = 0;
  if (tiles <= kWalkTileLimit) {
    const TileWalk walk = TileWalk::make(n_m, tiles, grows, cap);
    const int grid = walk.grid(cap);
    for (int bx = 0; bx < grid; ++bx) {
      TileWalk::Cursor c = walk.start(unsigned(bx));
      double cycles = 0;
      std::int64_t count = 0;
      for (int t; walk.next(c, t, unsigned(grid)); ++count) cycles += work[std::size_t(n_m - 1 - t % n_m)].cycles;
      longest = std::max(longest, cycles / occ + cal.cta_overhead_cycles + double(count - 1) * per_tile);
    }
  } else {
    // Closed form: the mean work per CTA plus one unit's worth (the stride's last round), ceil(tiles / grid) tiles.
    double total = 0, heaviest = 0;
    for (const BlockWork& w : work) {
      total += w.cycles * double(bh);
      heaviest = std::max(heaviest, w.cycles);
    }
    const double count = std::ceil(double(tiles) / cap);
    longest = (total / cap + (grows ? 2 : 1) * heaviest) / occ + cal.cta_overhead_cycles + (count - 1) * per_tile;
  }
  return longest / gpu.clock_hz;
}

}  // namespace

MaskSpec AttnShape::mask() const {
  MaskSpec m;
  m.bottom_right = bottom_right;
  m.left = window_left;
  m.right = causal ? (window_right < 0 ? 0 : std::min<std::int64_t>(window_right, 0)) : window_right;
  return m;
}

void AttnShape::validate() const {
  auto need = [](const char* what, std::int64_t v) {
    if (v < 1)
      throw Error(Error::Kind::invalid_argument, what, std::to_string(v), "must be >= 1",
                  "give the attention shape's sizes");
  };
  need("batch", batch);
  need("nq", nq);
  need("nk", nk);
  need("hq", hq);
  need("hkv", hkv);
  need("d", d);
  if (hq % hkv != 0)
    throw Error(Error::Kind::invalid_argument, "hkv", std::to_string(hkv),
                "must divide hq = " + std::to_string(hq) + " (GQA)", "use a divisor of the query heads");
  if (density != 0 && !(density > 0 && density <= 1))
    throw Error(Error::Kind::invalid_argument, "density", std::to_string(density),
                "must be a share of key blocks in (0, 1] (0: not block-sparse)", "give the visited share P");
  if (density > 0 && !globals.empty())
    throw Error(Error::Kind::unsupported, "density", std::to_string(density),
                "with global positions (BigBird) is not modeled", "model block-sparse or local + global, not both");
  for (std::size_t x = 0; x < globals.size(); ++x)
    if (globals[x] < 0 || globals[x] >= std::min(nq, nk) || (x > 0 && globals[x] <= globals[x - 1]))
      throw Error(Error::Kind::invalid_argument, "globals", std::to_string(globals[x]),
                  "global positions must be sorted, distinct and in [0, min(nq, nk) = " +
                      std::to_string(std::min(nq, nk)) + ")",
                  "give G <= min(nq, nk) positions in increasing order");
}

double AttnShape::flops() const { return 4.0 * visible_pairs(*this) * double(d) * double(hq) * double(batch); }

KernelPrediction predict(const Gpu& gpu, const AttnShape& s, const KernelVariant& v) {
  s.validate();
  KernelPrediction p;
  p.variant = v;
  p.flops = s.flops();
  const GpuPath& cal = gpu.path(v.path);
  const double rate = gpu.tensor_rate(s.dtype);  // throws for a dtype without tensor cores
  const double b = double(element_size(s.dtype)), d = double(s.d);
  const bool flat = v.dataflow == Dataflow::flat;
  if (v.dataflow == Dataflow::automatic) return infeasible(p, "a variant must be flash or flat, not auto");
  if (v.block_m < 1 || v.block_n < 1 || v.warps < 1 || v.producer_warps < 0 || v.warps + v.producer_warps > 32 ||
      v.stages < 1 || v.cta_regs < 0)
    return infeasible(p, "block_m, block_n, stages must be >= 1, warps + producer_warps in [1, 32], cta_regs >= 0");
  if (v.head_dim != 0 && v.head_dim != s.d)
    return infeasible(p, "built for D = " + std::to_string(v.head_dim) + " only");
  if (flat && s.sparse()) return infeasible(p, "sparse calls (block lists, local + global) run on the Flash kernels only");

  const MaskSpec mask = s.mask();
  const std::int64_t bm = v.block_m, bn = v.block_n;
  const std::int64_t n_mblocks = (s.nq + bm - 1) / bm;

  // Widest key span of any query block (the FLAT logit block must hold it).
  std::int64_t max_span = 0;
  for (std::int64_t mb = 0; mb < n_mblocks; ++mb) {
    const std::int64_t r0 = mb * bm, r1 = std::min(s.nq, r0 + bm) - 1;
    const std::int64_t lo = mask.lo(r0, s.nq, s.nk), hi = mask.hi(r1, s.nq, s.nk);
    if (hi >= lo) max_span = std::max(max_span, (hi / bn - lo / bn + 1) * bn);
  }

  // Shared memory and registers per CTA.
  const bool flat_regs = flat && v.cap_n > 0;  // FLAT with the logit rows in registers
  if (flat_regs && max_span > v.cap_n)
    return infeasible(p, "FLAT holds key rows of Nk <= " + std::to_string(v.cap_n) + " in registers; this call needs " +
                             std::to_string(max_span));
  const double q_smem = double(bm) * d * b;
  double smem = q_smem + double(v.stages) * 2.0 * double(bn) * d * b;  // Q, K and V buffers
  if (flat && !flat_regs) smem = q_smem + double(v.stages) * double(bn) * d * b + double(bm) * double(max_span) * 4.0;
  p.smem_bytes = int(std::min(smem, 2e9));
  const double threads = 32.0 * v.warps;
  // Accumulators in registers (Q fragments are re-read from shared memory each key block): O and S
  // (one key block; a register FLAT variant holds its whole row capacity).
  const double s_cols = flat_regs ? double(v.cap_n) : double(bn);
  const double frag_regs = (double(bm) * d + double(bm) * s_cols) / threads;
  p.regs_per_thread = int(std::ceil(frag_regs)) + cal.reg_overhead;
  if (smem > gpu.smem_per_cta) {
    if (flat)
      return infeasible(p, "FLAT logit block R x Nk = " + std::to_string(bm) + " x " + std::to_string(max_span) +
                               " fp32 plus Q and the K/V ring needs " + std::to_string(std::int64_t(smem)) +
                               " B of shared memory; the per-CTA limit is " + std::to_string(gpu.smem_per_cta) + " B");
    return infeasible(p, "needs " + std::to_string(std::int64_t(smem)) + " B of shared memory; the per-CTA limit is " +
                             std::to_string(gpu.smem_per_cta) + " B");
  }
  if (p.regs_per_thread > cal.max_regs_per_thread)
    return infeasible(p, "needs about " + std::to_string(p.regs_per_thread) + " registers per thread; the budget is " +
                             std::to_string(cal.max_regs_per_thread));
  // Occupancy: CTAs per SM by shared memory (1 KiB reserved per CTA), warps, registers.
  const int by_smem = int(gpu.smem_per_sm / (smem + 1024));
  const int by_warps = gpu.max_warps_per_sm / (v.warps + v.producer_warps);
  const double cta_regs = v.cta_regs > 0 ? double(v.cta_regs) : double(p.regs_per_thread) * threads;
  const int by_regs = int(gpu.regs_per_sm / cta_regs);
  p.ctas_per_sm = std::min({gpu.max_ctas_per_sm, by_smem, by_warps, by_regs});
  if (p.ctas_per_sm < 1) return infeasible(p, "no CTA fits on an SM (shared memory, warps or registers)");

  // Operand reads from shared memory: once per warp (mma.sync) or per warpgroup (wgmma).
  const double readers = std::ceil(double(v.warps) / cal.smem_reader_warps);
  // Per-SM rates per clock.
  const double tc_per_clk = rate / (gpu.sms * gpu.clock_hz) * cal.mma_efficiency;
  std::vector<BlockWork> work(static_cast<std::size_t>(n_mblocks));
  for (std::int64_t mb = 0; mb < n_mblocks; ++mb) {
    const std::int64_t r0 = mb * bm, r1 = std::min(s.nq, r0 + bm) - 1;
    BlockWork& w = work[std::size_t(mb)];
    // The key blocks the kernel visits (the band's, or a sparse call's lists: sparse_blocks.h).
    const KeyBlocks kb = key_blocks(s, r0, r1, bn);
    const double blocks = kb.visited, partial = kb.partial;
    const double scores = double(bm) * double(bn) * blocks, masked = double(bm) * double(bn) * partial;
    const double mma = 4.0 * scores * d;
    double exps = scores, alu = scores * cal.alu_ops_per_score + masked * cal.mask_ops_per_score + double(bm) * d;
    double smem_bytes = 0;
    if (flat_regs) {
      // Like flash without the running rescale: every warp reads each K and V block and Q; one exp
      // per logit; O scaled once at the end.
      smem_bytes = blocks * (2.0 * double(bn) * d * b * (1.0 + readers) + double(bm) * d * b);
    } else if (flat) {
      // K then V stream through one ring; S (fp32) written, read for the row max/sum, P (16-bit) written
      // in place and read by every warp for P V (warps split D).
      // Every warp reads all Q rows (its key slice needs them) each key block.
      smem_bytes = blocks * (4.0 * double(bn) * d * b + double(bm) * double(bn) * (4 + 4 + 2 + 2.0 * readers) +
                             readers * double(bm) * d * b);
    } else {
      // Online softmax: per key block, rescale m, l and the O accumulator.
      exps += double(bm) * blocks;
      alu += blocks * double(bm) * (cal.rescale_ops_per_row + d);
      // Q fragments are re-read from shared memory for every key block (FA2 keeps Q in smem).
      smem_bytes = blocks * (2.0 * double(bn) * d * b * (1.0 + readers) + double(bm) * d * b);
    }
    w.tensor = mma / tc_per_clk;
    w.softmax = exps / gpu.mufu_per_clk_per_sm + alu / gpu.fp32_per_clk_per_sm;
    w.smem = smem_bytes / gpu.smem_bytes_per_clk_per_sm;
    const double overlap = flat ? cal.flat_overlap : cal.overlap;
    w.cycles = std::max(w.smem, w.tensor + w.softmax - overlap * std::min(w.tensor, w.softmax));
    w.l2_bytes = 2.0 * double(bm) * d * b + blocks * 2.0 * double(bn) * d * b;
  }

  const std::int64_t bh = s.batch * s.hq;
  p.ctas = bh * n_mblocks;
  p.waves = double(p.ctas) / (double(gpu.sms) * p.ctas_per_sm);
  // An SM holding j CTAs at once runs at min(1, j x warps / warps_to_saturate) of its rate, and the
  // per-CTA latency overhead overlaps across the j.
  auto sm_seconds = [&](double work_cycles, std::int64_t count) {
    const double j = double(std::min<std::int64_t>(p.ctas_per_sm, count));
    const double occ = std::min(1.0, j * v.warps / cal.warps_to_saturate);
    return work_cycles / (gpu.clock_hz * occ) + double(count) * cal.cta_overhead_cycles / (j * gpu.clock_hz);
  };
  double total = 0, longest = 0;
  for (const BlockWork& w : work) {
    total += w.cycles * double(bh);
    longest = std::max(longest, w.cycles);
    p.tensor_s += w.tensor * double(bh);
    p.softmax_s += w.softmax * double(bh);
    p.smem_s += w.smem * double(bh);
    p.l2_bytes += w.l2_bytes * double(bh);
  }
  if (v.persistent) {
    p.schedule_s = persistent_schedule_s(gpu, cal, v, s, work, bh);
  } else if (p.ctas <= kSimulateCtaLimit) {
    // CTAs in launch order (src/cuda/common/tile_coord.cuh: m-block fastest, the heaviest -- last -- query block
    // first) go to the least-loaded SM; then each SM's time.
    using Slot = std::pair<double, int>;  // (load in cycles, SM)
    std::priority_queue<Slot, std::vector<Slot>, std::greater<>> heap;
    std::vector<double> load(std::size_t(gpu.sms), 0.0);
    std::vector<std::int64_t> count(std::size_t(gpu.sms), 0);
    for (int i = 0; i < gpu.sms; ++i) heap.push({0.0, i});
    for (std::int64_t h = 0; h < bh; ++h)
      for (auto it = work.rbegin(); it != work.rend(); ++it) {
        const BlockWork& w = *it;
        const auto [l, sm] = heap.top();
        heap.pop();
        load[std::size_t(sm)] = l + w.cycles + cal.cta_overhead_cycles;
        ++count[std::size_t(sm)];
        heap.push({load[std::size_t(sm)], sm});
      }
    for (int i = 0; i < gpu.sms; ++i)
      if (count[std::size_t(i)] > 0)
        p.schedule_s = std::max(p.schedule_s, sm_seconds(load[std::size_t(i)] - double(count[std::size_t(i)]) *
                                                                                   cal.cta_overhead_cycles,
                                                         count[std::size_t(i)]));
  } else {
    const std::int64_t per_sm = (p.ctas + gpu.sms - 1) / gpu.sms;
    p.schedule_s = sm_seconds(total / gpu.sms + longest, per_sm);
  }
  const double sm_s = 1.0 / (gpu.clock_hz * gpu.sms);
  p.tensor_s *= sm_s;
  p.softmax_s *= sm_s;
  p.smem_s *= sm_s;

  p.dram_bytes = b * (2.0 * double(s.batch) * double(s.hq) * double(s.nq) * d +
                      2.0 * double(s.batch) * double(s.hkv) * double(s.nk) * d) +
                 4.0 * double(s.batch) * double(s.hq) * double(s.nq);
  p.memory_s = std::max(p.dram_bytes / gpu.hbm_bw, p.l2_bytes / gpu.l2_bw);
  p.time_s = std::max(p.schedule_s, p.memory_s) + gpu.launch_s;
  return p;
}

}  // namespace flatattn::model
