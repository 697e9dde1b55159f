// The definition of launch_bwd (launch_api.h): the backward's launches on the caller's stream, in
// order: D_i = rowsum(dO o O) and a zeroed dQ accumulator (common/bwd_rows.cuh; deterministic: after
// the K/V maxima of the dQ bound, bwd_bound_kernel, and with each row's grid), the main kernel over key blocks
// (sm80/bwd_kernel.cuh; the sm90 family: sm90/bwd_kernel.cuh, wgmma), the dQ conversion.
// The shape comes from the policy table (bwd_tile). Included only by the generated bwd_* instance files.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <string>
#include <type_traits>

#include "src/core/variant.h"
#include "src/cuda/common/bwd_rows.cuh"
#include "src/cuda/launch_api.h"
#include "src/cuda/launch_common.cuh"
#include "src/cuda/params_host.h"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/runtime.h"
#include "src/cuda/sparse_host.h"
#include "src/cuda/sm80/bwd_kernel.cuh"
#include "src/cuda/sm90/bwd_kernel.cuh"

namespace flatattn::cuda {

template <Family F, int D>
using BwdShapeOf = BwdShape<D, bwd_tile(F, D)>;

/// The sm80-family backward tile of variant V: bwd_tile, except that a bias whose staged slots (an f32 tile per
/// Q/dO stage, common/bias_tile.cuh) do not fit next to two stages runs one stage when that makes them fit
/// (A100's 163 KB: D = 32, 96, 128, 192 of the sm80 family, D = 32, 96 of the sm86; one stage cost D = 128 ~8%,
/// bench/results/gpu-bwd-h100.md, the bias's global reads 4-7x).
constexpr BwdTileSize one_stage(BwdTileSize t) {
  t.stages = 1;
  return t;
}

template <Family F, int D, class V>
constexpr BwdTileSize bwd_tile_of() {
  constexpr BwdTileSize t = bwd_tile(F, D);
  if constexpr (has_bias<typename V::Score> && t.stages == 2) {
    constexpr BwdTileSize one = one_stage(t);
    if constexpr (BwdShape<D, t>::template Bias<F, V>::kMaxBytes == 0 &&
                  BwdShape<D, one>::template Bias<F, V>::kMaxBytes > 0) {
      return one;
    } else {
      return t;
    }
  } else {
    return t;
  }
}

/// The sm90 family's shape (its rows of bwd_tile use block_m, block_n, warps, min_blocks and dq_wd, the
/// warpgroups of the dQ product).
template <int D>
using Sm90BwdShapeOf = sm90::BwdShape<D, bwd_tile(Family::sm90, D)>;

/// The staged bias of a backward shape S (sm80/bwd_kernel.cuh BwdShape::Bias, sm90/bwd_kernel.cuh BwdShape::Bias).
template <Family F, class S, class V>
struct BwdBiasOf {
  using type = typename S::template Bias<F, V>;
};
template <class S, class V>
struct BwdBiasOf<Family::sm90, S, V> {
  using type = typename S::template Bias<V>;
};

/// Shared memory a shape S adds for variant V beyond kSmemBytes and the bias slots: the sm90 kernel's dropout keep
/// bits (sm90/bwd_kernel.cuh BwdShape::kDropBytes); 0 for the sm80 family and every other variant.
template <Family F, class S, class V>
constexpr int bwd_extra_smem() {
  if constexpr (F == Family::sm90) {
    return S::template kDropBytes<V>;
  } else {
    return 0;
  }
}

/// The backward main kernel of family F (kSparse: the block lists' one, issue 16).
template <Family F, class E, class S, class V, bool kSparse>
constexpr auto bwd_kernel_of() {
  if constexpr (F == Family::sm90) {
    return sm90::flash_bwd_kernel<E, S, V, kSparse>;
  } else {
    return flash_bwd_kernel<F, E, S, V, kSparse>;
  }
}

/// The three launches with an explicit kernel shape S (launch_bwd passes the policy table's; the tile
/// tuner, bench/gpu/tune_bwd.cu, passes candidates).
template <Family F, class E, class S, class V>
LaunchInfo launch_bwd_shape(const BwdLaunchArgs& a) {
  constexpr int D = S::kD;
  using R = RowPassShape<D>;
  static std::atomic<std::uint64_t> attr_done{0};
  const Problem& pr = *a.problem;
  const auto stream = static_cast<cudaStream_t>(a.stream);
  // Block-sparse (issue 16): block sizes that are whole kernel tiles; checked before anything is launched.
  if (pr.sparse.on) check_sparse_tile(pr.sparse, S::kBlockM, S::kBlockN);
  const BwdParams p = make_bwd_params(pr, *a.tensors, a.ws, S::kBlockM, S::kBlockN, a.meta_err);

  const std::int64_t n_row_blocks = (pr.nq + R::kRows - 1) / R::kRows;
  const std::int64_t row_ctas = n_row_blocks * pr.hq * pr.batch;
  check_grid(row_ctas, "ceil(Nq / " + std::to_string(R::kRows) + ") * Hq * B");
  const std::int64_t ctas = std::int64_t{p.n_n_blocks} * pr.hkv * pr.batch;
  check_grid(ctas, "ceil(Nk / " + std::to_string(S::kBlockN) + ") * Hkv * B");

  if (p.deterministic) {  // the maxima over K and V that bound dQ (common/repro_dq.cuh)
    check(cudaMemsetAsync(p.dq_bound, 0, sizeof(DqBound), stream), "cudaMemsetAsync(backward dQ bound)");
    const std::int64_t key_blocks = (pr.nk + R::kRows - 1) / R::kRows;
    const std::int64_t key_ctas = key_blocks * pr.hkv * pr.batch;
    check_grid(key_ctas, "ceil(Nk / " + std::to_string(R::kRows) + ") * Hkv * B");
    if (key_ctas > 0) {
      bwd_bound_kernel<E, D><<<static_cast<unsigned>(key_ctas), R::kThreads, 0, stream>>>(p, static_cast<int>(key_blocks));
      check(cudaGetLastError(), "backward bound launch");
    }
  }
  if (row_ctas > 0) {
    bwd_dot_kernel<E, D><<<static_cast<unsigned>(row_ctas), R::kThreads, 0, stream>>>(p, static_cast<int>(n_row_blocks));
    check(cudaGetLastError(), "backward pre-pass launch");
  }
  if (p.dsinks != nullptr && pr.hq > 0) {  // after the pre-pass: reads its D_i
    if (row_ctas > 0) {
      bwd_sinks_kernel<kSinkThreads><<<static_cast<unsigned>(pr.hq), kSinkThreads, 0, stream>>>(p);
      check(cudaGetLastError(), "backward dsinks launch");
    } else {
      check(cudaMemsetAsync(p.dsinks, 0, sizeof(float) * pr.hq, stream), "cudaMemsetAsync(dsinks)");
    }
  }
  if (ctas > 0) {
    const auto kernel = bwd_kernel_of<F, E, S, V, false>();
    static_assert(S::kSmemBytes + bwd_extra_smem<F, S, V>() <= smem_optin_bytes(F),
                  "bwd_tile entry over its family's shared memory");
    // A staged bias (common/bias_tile.cuh): its slots after the rows, sized for the call's bias dtype; the
    // kernel's attribute is raised once for the largest (f32).
    using B = typename BwdBiasOf<F, S, V>::type;
    if constexpr (B::kMaxBytes > 0) prepare_smem(kernel, S::kSmemBytes + B::kMaxBytes, a.device, attr_done);
    const int smem = S::kSmemBytes + bwd_extra_smem<F, S, V>() + B::smem_bytes(pr.variant.bias_dtype);
    if (pr.sparse.on) {
      static std::atomic<std::uint64_t> sparse_attr_done{0};
      const auto sparse_kernel = bwd_kernel_of<F, E, S, V, true>();  // a separate function: the dense one is unchanged
      if constexpr (B::kMaxBytes > 0) prepare_smem(sparse_kernel, S::kSmemBytes + B::kMaxBytes, a.device, sparse_attr_done);
      prepare_smem(sparse_kernel, smem, a.device, sparse_attr_done);
      sparse_kernel<<<static_cast<unsigned>(ctas), S::kThreads, smem, stream>>>(p, pr.sparse);
    } else {
      prepare_smem(kernel, smem, a.device, attr_done);
      kernel<<<static_cast<unsigned>(ctas), S::kThreads, smem, stream>>>(p, NoSparseArg{});
    }
    check(cudaGetLastError(), "backward kernel launch");
  }
  if (row_ctas > 0) {
    bwd_convert_kernel<E, D><<<static_cast<unsigned>(row_ctas), R::kThreads, 0, stream>>>(
        p, static_cast<int>(n_row_blocks));
    check(cudaGetLastError(), "backward dQ conversion launch");
  }
  return {S::kBlockM, S::kBlockN};
}

template <Family F, DType DT, int D, VariantId Var>
LaunchInfo launch_bwd(const BwdLaunchArgs& a) {
  static_assert(DT == DType::f16 || DT == DType::bf16, "kernels store f16 or bf16");
  using E = std::conditional_t<DT == DType::bf16, BF16, F16>;
  if constexpr (F == Family::sm90) {
    return launch_bwd_shape<F, E, Sm90BwdShapeOf<D>, VariantOf<Var>>(a);
  } else {
    using V = VariantOf<Var>;
    return launch_bwd_shape<F, E, BwdShape<D, bwd_tile_of<F, D, V>()>, V>(a);
  }
}

}  // namespace flatattn::cuda
