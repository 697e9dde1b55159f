// Ring attention's cost per hop (see context_parallel.h).
#include "src/model/context_parallel.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "flatattn/error.h"
#include "src/model/planner.h"

namespace flatattn::model {

namespace {

double kernel_s(const Gpu& gpu, std::span<const KernelVariant> variants, const RingShape& r, std::int64_t nq,
                std::int64_t nk, bool causal) {
  AttnShape s;
  s.batch = r.batch;
  s.nq = nq;
  s.nk = nk;
  s.hq = r.hq;
  s.hkv = r.hkv;
  s.d = r.d;
  s.dtype = r.dtype;
  s.causal = causal;
  return plan(gpu, s, variants).chosen.time_s;
}

}  // namespace

RingPrediction predict_ring(const Gpu& gpu, std::span<const KernelVariant> variants, const RingShape& r,
                            const Link& link) {
  if (r.world < 1)
    throw Error(Error::Kind::invalid_argument, "world", std::to_string(r.world), "must be >= 1", "pass the GPU count");
  if (r.causal && r.n_local % 2)
    throw Error(Error::Kind::invalid_argument, "n_local", std::to_string(r.n_local),
                "causal ring attention uses the zigzag layout: two chunks per rank, so n_local must be even",
                "pass an even token count per GPU");
  if (!(link.gbps > 0) || !(link.efficiency > 0) || link.efficiency > 1)
    throw Error(Error::Kind::invalid_argument, "link", std::to_string(link.gbps) + " GB/s x " +
                std::to_string(link.efficiency), "bandwidth must be > 0 and efficiency in (0, 1]",
                "pass the measured per-direction P2P rate");
  const double esize = r.dtype == DType::f32 ? 4 : 2;
  const double bw = link.gbps * 1e9 * link.efficiency;
  const double n = static_cast<double>(r.n_local);
  const double kv_bytes = 2 * r.batch * n * r.hkv * r.d * esize;
  const double dkv_bytes = 2 * r.batch * n * r.hkv * r.d * 4;
  const double q_elems = r.batch * n * r.hq * r.d, kv_elems = 2 * r.batch * n * r.hkv * r.d;
  const double unit = 4 * static_cast<double>(r.d) * r.hq * r.batch;  // forward FLOPs per visible pair

  RingPrediction p;
  double rank_flops = 0;
  for (int t = 0; t < r.world; ++t) {
    RingHop h;
    double rows = n;  // query rows the hop's partial output covers
    if (!r.causal) {
      h.compute_s = kernel_s(gpu, variants, r, r.n_local, r.n_local, false);
      h.flops = unit * n * n;
    } else if (t == 0) {  // the own shard: one causal call over both chunks (ring.py, plan_hop)
      h.compute_s = kernel_s(gpu, variants, r, r.n_local, r.n_local, true);
      h.flops = unit * n * (n + 1) / 2;
    } else {  // all queries x the first key chunk, or the second query chunk x all keys: the slower of the two
      h.compute_s = std::max(kernel_s(gpu, variants, r, r.n_local, r.n_local / 2, false),
                             kernel_s(gpu, variants, r, r.n_local / 2, r.n_local, false));
      h.flops = unit * n * n / 2;
      rows = n;  // the first shape merges all rows (the slower merge)
    }
    const bool last = t + 1 == r.world;
    h.link_fwd_s = last ? 0 : kv_bytes / bw;
    h.link_bwd_s = ((last ? 0 : kv_bytes) + (r.world > 1 ? dkv_bytes : 0)) / bw;
    // merge: read + write the fp32 accumulator, read the partial (esize) per output element
    const double merge_fwd = r.batch * rows * r.hq * r.d * (8 + esize) / gpu.hbm_bw;
    // backward: dQ (fp32 read + write + partial) and the dK/dV accumulator (fp32 read + write + partial)
    const double merge_bwd = (q_elems + kv_elems) * (8 + esize) / gpu.hbm_bw;
    h.merge_s = merge_fwd;
    p.fwd_s += std::max(h.compute_s, h.link_fwd_s) + merge_fwd;
    p.bwd_s += std::max(2.5 * h.compute_s, h.link_bwd_s) + merge_bwd;
    p.link_over_compute = std::max({p.link_over_compute, h.link_fwd_s / h.compute_s,
                                    h.link_bwd_s / (2.5 * h.compute_s)});
    rank_flops += h.flops;
    p.hops.push_back(h);
  }
  // single-GPU rate on the same kind of work
  double single_s = 0, single_flops = 0;
  if (!r.causal) {
    single_s = kernel_s(gpu, variants, r, r.n_local, r.n_local * r.world, false);
    single_flops = unit * n * n * r.world;
  } else {
    const std::int64_t l = std::max<std::int64_t>(
        128, static_cast<std::int64_t>(std::llround(n * std::sqrt(static_cast<double>(r.world)) / 128)) * 128);
    single_s = kernel_s(gpu, variants, r, l, l, true);
    single_flops = unit * static_cast<double>(l) * (l + 1) / 2;
  }
  p.single_tflops = single_flops / single_s * 1e-12;
  p.ideal_s = 3.5 * rank_flops / (single_flops / single_s);
  p.efficiency = p.ideal_s / (p.fwd_s + p.bwd_s);
  return p;
}

}  // namespace flatattn::model
