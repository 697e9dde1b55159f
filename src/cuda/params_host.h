// Problem + FwdTensors / BwdTensors (validated, src/core) -> the kernels' FwdParams / BwdParams. Plain C++.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "src/core/problem.h"
#include "src/cuda/common/bwd_params.h"
#include "src/cuda/common/params.h"
#include "src/cuda/launch_api.h"

namespace flatattn::cuda {

// bench/gpu/empty_launch.cu launches an empty kernel with a parameter block of this size (host_overhead's floor).
static_assert(sizeof(FwdParams) == 344, "FwdParams changed size: update bench/gpu/empty_launch.cu");

/// meta_err: the call's metadata error word (varlen; src/cuda/meta_check.h), may be null.
inline FwdParams make_params(const Problem& pr, const FwdTensors& t, unsigned* meta_err = nullptr) {
  FwdParams p;
  p.q = t.q;
  p.k = t.k;
  p.v = t.v;
  p.o = t.o;
  p.lse = t.lse;
  p.sinks = t.sinks;
  p.q_b = t.sq.b, p.q_n = t.sq.n, p.q_h = t.sq.h;
  p.k_b = t.sk.b, p.k_n = t.sk.n, p.k_h = t.sk.h;
  p.v_b = t.sv.b, p.v_n = t.sv.n, p.v_h = t.sv.h;
  p.o_b = t.so.b, p.o_n = t.so.n, p.o_h = t.so.h;
  p.lse_b = t.slse.b, p.lse_n = t.slse.n, p.lse_h = t.slse.h;
  p.nq = static_cast<int>(pr.nq);
  p.nk = static_cast<int>(pr.nk);
  p.group = static_cast<int>(pr.group());
  p.d = static_cast<int>(pr.d);
  if (pr.varlen) {
    p.cu_q = pr.cu_seqlens_q;
    p.cu_k = pr.cu_seqlens_k;
    p.meta_err = meta_err;
    // cu_seqlens are int32: a packed tensor longer than INT_MAX rows is only reachable up to there.
    constexpr std::int64_t kIntMax = 0x7fffffff;
    p.total_q = static_cast<int>(std::min(pr.total_q, kIntMax));
    p.total_k = static_cast<int>(std::min(pr.total_k, kIntMax));
  }
  constexpr float kLog2e = 1.4426950408889634f;
  p.var = make_variant_data(pr.variant, pr.scale, kLog2e);
  const bool folds = visit_variant(variant_of(pr.variant), [&]<class V>() { return V::kFoldsScale; });
  if (folds && pr.scale > 0.f) {
    p.fold = 1;  // max of the raw logits is the max of the scaled ones
    p.mul = pr.scale * kLog2e;
  } else {
    p.fold = 0;  // a score transform, or a negative (or zero) scale that flips the order: score first
    p.mul = 1.f;
  }
  // Window sizes beyond any sequence act as unbounded; clamp them into int range.
  constexpr std::int64_t kBig = std::int64_t{1} << 30;
  p.bottom_right = pr.mask.bottom_right ? 1 : 0;
  p.left = static_cast<int>(std::min(pr.mask.left, kBig));
  p.right = static_cast<int>(std::min(pr.mask.right, kBig));
  return p;
}

/// The backward's parameters: the forward's (q, k, v, the forward output, lse) plus gradients and the
/// workspace. block_m, block_n: the instance's tiles.
inline BwdParams make_bwd_params(const Problem& pr, const BwdTensors& t, const BwdWorkspace& ws, int block_m,
                                 int block_n, unsigned* meta_err = nullptr) {
  FwdTensors ft;
  ft.q = t.q;
  ft.k = t.k;
  ft.v = t.v;
  ft.o = const_cast<void*>(t.o);  // read only: the forward's output
  ft.lse = const_cast<float*>(t.lse);
  ft.sinks = t.sinks;
  ft.sq = t.sq, ft.sk = t.sk, ft.sv = t.sv, ft.so = t.so, ft.slse = t.slse;
  BwdParams p;
  p.f = make_params(pr, ft, meta_err);
  p.dout = t.dout;
  p.dq = t.dq;
  p.dk = t.dk;
  p.dv = t.dv;
  p.do_b = t.sdo.b, p.do_n = t.sdo.n, p.do_h = t.sdo.h;
  p.dq_b = t.sdq.b, p.dq_n = t.sdq.n, p.dq_h = t.sdq.h;
  p.dk_b = t.sdk.b, p.dk_n = t.sdk.n, p.dk_h = t.sdk.h;
  p.dv_b = t.sdv.b, p.dv_n = t.sdv.n, p.dv_h = t.sdv.h;
  p.dq_accum = ws.dq_accum;
  p.dq_unit = ws.dq_unit;
  p.dq_bound = ws.dq_bound;
  p.dsum = ws.dsum;
  p.batch = static_cast<int>(pr.batch);
  p.hq = static_cast<int>(pr.hq);
  p.hkv = static_cast<int>(pr.hkv);
  p.n_m_blocks = static_cast<int>((pr.nq + block_m - 1) / block_m);
  p.n_n_blocks = static_cast<int>((pr.nk + block_n - 1) / block_n);
  p.ds_scale = pr.scale;
  p.deterministic = pr.deterministic ? 1 : 0;
  p.dsinks = t.dsinks;
  p.dbias = t.dbias.data;
  p.dbias_b = t.dbias.sb, p.dbias_h = t.dbias.sh, p.dbias_i = t.dbias.si;
  p.dbias_dtype = static_cast<int>(t.dbias.dtype);
  p.dbias_atomic = t.dbias.accumulate ? 1 : 0;
  p.grad_f32 = pr.dtype != DType::f32 && t.grad_dtype == DType::f32 ? 1 : 0;
  p.dbias_zero_rest = t.dbias.kernel_zeros ? 1 : 0;
  return p;
}

}  // namespace flatattn::cuda
