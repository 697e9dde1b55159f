// The CPU forward pass: row tiles of every (batch, query head) split over an OpenMP team, each computed
// by the Flash or FLAT tile function (forward_flash.cc, forward_flat.cc) with per-thread scratch.
#include <omp.h>

#include <cmath>
#include <string>
#include <vector>

#include "src/core/backend.h"
#include "src/core/validate.h"
#include "src/cpu/amx/amx.h"
#include "src/cpu/engine.h"
#include "src/cpu/forward_tile.h"
#include "src/cpu/gemm.h"
#include "src/cpu/pack.h"
#include "src/cpu/schedule.h"
#include "src/cpu/tile.h"

namespace flatattn::cpu {

namespace {

void check_plan(const ForwardPlan& plan) {
  const std::string v = std::string(name(plan.dataflow)) + " block_m=" + std::to_string(plan.block_m) +
                        " block_n=" + std::to_string(plan.block_n);
  require(plan.dataflow == Dataflow::flash || plan.dataflow == Dataflow::flat, "plan", v,
          "dataflow must be flash or flat", "resolve automatic with plan_forward()");
  require(plan.block_m > 0 && plan.block_m % kRowAlign == 0, "plan", v,
          "block_m must be a positive multiple of " + std::to_string(kRowAlign), "round block_m up");
  require(plan.dataflow == Dataflow::flat || (plan.block_n > 0 && plan.block_n % kPanel == 0), "plan", v,
          "Flash block_n must be a positive multiple of " + std::to_string(kPanel), "round block_n up");
}

/// Row tiles in (batch, kv head, query head, rows) order, so consecutive tiles share packed K/V,
/// with prefix sums of their costs (rows x visible key span, plus the per-tile packing).
struct TileList {
  std::vector<RowTile> tiles;
  std::vector<double> prefix;
};

/// Keys a block-sparse tile of query block r visits (its listed blocks), for the cost split.
double sparse_keys(const Problem& p, std::int64_t b, std::int64_t h, std::int64_t r) {
  const SparseSpec& s = p.sparse;
  return static_cast<double>(s.kv.partial_count(b, h, r) + s.kv.full_count(b, h, r)) * s.block_kv;
}

TileList row_tiles(const Problem& p, int block_m) {
  TileList l;
  std::vector<double> cost;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const SeqSpan sp = seq_span(p, b);
    for (std::int64_t h = 0; h < p.hq; ++h) {
      // Block-sparse: tiles never straddle a query block (each visits one block row's list).
      const std::int64_t seg = p.sparse.on ? p.sparse.block_q : std::max<std::int64_t>(sp.nq, 1);
      for (std::int64_t s0 = 0; s0 < sp.nq; s0 += seg) {
        const std::int64_t s1 = std::min(sp.nq, s0 + seg);
        for (std::int64_t i0 = s0; i0 < s1; i0 += block_m) {
          const std::int64_t rows = std::min<std::int64_t>(block_m, s1 - i0);
          const Range keys = tile_keys(p.mask, sp, i0, rows);
          const double span = p.sparse.on ? sparse_keys(p, b, h, s0 / seg) : (keys.empty() ? 0 : keys.hi - keys.lo + 1);
          l.tiles.push_back({b, h, i0, rows, sp});
          cost.push_back(static_cast<double>(round_up(rows, kRowAlign)) * (span + 2 * kPanel));
        }
      }
    }
  }
  l.prefix = prefix_sums(cost);
  return l;
}

std::string kernel_name(const Problem& p, const ForwardPlan& plan, MatmulPath path) {
  std::string s = "cpu_" + std::string(name(plan.dataflow)) + "_fwd_" + std::string(name(p.dtype)) + "_d" +
                  std::to_string(p.d) + "_m" + std::to_string(plan.block_m);
  s += plan.dataflow == Dataflow::flat ? "_nall" : "_n" + std::to_string(plan.block_n);
  s += matmul_suffix(path);  // the products ran on AMX tiles or AVX512-BF16 (src/cpu/amx/amx.h)
  if (path != MatmulPath::fp32) s += split_policy(p).suffix;  // operands split into bf16 pieces (f16)
  return s;
}

}  // namespace

void finish_tile(const Problem& p, const FwdTensors& t, const RowTile& tile, const ForwardScratch& w) {
  const std::int64_t dp = padded_d(p.d);
  for (std::int64_t i = 0; i < tile.rows; ++i) {
    const bool empty = w.l[i] == 0.f;  // no visible key: O = 0, LSE = -inf
    const std::int64_t n = tile.i0 + i;
    float inv = empty ? 0.f : 1.f / w.l[i];
    float lse = empty ? kNegInf : w.m[i] + std::log(w.l[i]);
    if (t.sinks != nullptr) add_sink(t.sinks[tile.h], inv, lse);
    const std::int64_t off = row_offset(p, t.so, tile.b, tile.sp.q0, n, tile.h);
    if (w.amx && p.dtype == DType::bf16) {  // the bf16 paths run on AVX-512 CPUs: the vector store
      bf16_store_row(w.o + i * dp, p.d, inv, static_cast<std::uint16_t*>(t.o) + off);
    } else {
      store_row(t.o, p.dtype, off, w.o + i * dp, p.d, inv);
    }
    if (t.lse) t.lse[row_offset(p, t.slse, tile.b, tile.sp.q0, n, tile.h)] = lse;
  }
}

Report run_forward(const Problem& p, const FwdTensors& t, const ForwardPlan& plan) {
  check_plan(plan);
  const TileList work = row_tiles(p, plan.block_m);
  const int threads = resolve_threads(p, work.tiles.size());
  Carver sizer;
  carve_forward(sizer, p, plan);
  std::vector<Scratch> scratch;  // allocated up front: an allocation failure throws here, not in a thread
  scratch.reserve(threads);
  for (int i = 0; i < threads; ++i) scratch.emplace_back(sizer.floats());
  const std::int64_t dp = padded_d(p.d);
  const MatmulPath path = forward_matmul(p);  // carve_forward decides the same
  const bool amx = path != MatmulPath::fp32;          // bf16 operand layouts (AMX or AVX512-BF16)

#pragma omp parallel num_threads(threads)
  {
    const ItemRange mine = thread_items(work.prefix, omp_get_thread_num(), omp_get_num_threads());
    Carver carver(scratch[omp_get_thread_num()].data());
    const ForwardScratch w = carve_forward(carver, p, plan);
    if (path == MatmulPath::amx) amx_begin();  // this thread's tile configuration
    std::int64_t packed_b = -1, packed_hk = -1;
    for (std::size_t i = mine.begin; i < mine.end; ++i) {
      const RowTile& tile = work.tiles[i];
      const std::int64_t hk = tile.h / p.group();
      if (tile.b != packed_b || hk != packed_hk) {  // K^T panels and V rows of this (b, kv head), fp32
        const Rows k = rows_of(p, t.k, t.sk, tile.b, tile.sp.k0, hk);
        const Rows v = rows_of(p, t.v, t.sv, tile.b, tile.sp.k0, hk);
        if (amx && w.split.pieces > 1) {  // f16: bf16 pieces (SplitPolicy, amx.h)
          pack_k_split(k, tile.sp.nk, round_up(tile.sp.nk, kPanel), p.d, amx_kd(p.d), w.split, w.kb);
          pack_v_split(v, tile.sp.nk, round_up(tile.sp.nk, kPanel), p.d, dp, w.split, w.vb, w.vb_plane);
        } else if (amx) {
          pack_k_vnni(k, tile.sp.nk, round_up(tile.sp.nk, kPanel), p.d, amx_kd(p.d), w.kb);
          pack_v_vnni(v, tile.sp.nk, round_up(tile.sp.nk, kPanel), p.d, dp, w.vb);
        } else {
          pack_panels(k, 0, tile.sp.nk, round_up(tile.sp.nk, kPanel), p.d, dp, w.kt);
          pack_rows(v, 0, tile.sp.nk, round_up(tile.sp.nk, kPanel), p.d, dp, 1.f, w.v);
        }
        packed_b = tile.b;
        packed_hk = hk;
      }
      if (plan.dataflow == Dataflow::flat) {
        flat_tile(p, t, tile, w);
      } else {
        flash_tile(p, t, plan, tile, w);
      }
    }
    if (path == MatmulPath::amx) amx_end();
  }

  Report r;
  r.backend = "cpu";
  r.dataflow = plan.dataflow;
  r.block_m = plan.block_m;
  r.block_n = plan.dataflow == Dataflow::flat ? static_cast<int>(p.nk) : plan.block_n;
  r.kernel = kernel_name(p, plan, path);
  return r;
}

Report forward(const Problem& p, const FwdTensors& t) { return run_forward(p, t, plan_forward(p, p.dataflow)); }

}  // namespace flatattn::cpu
