// The definition of launch_fwd (launch_api.h): picks the kernel and its compile-time shape from the
// policy table, builds the parameters and launches on the caller's stream. Included only by the
// generated instance files, so each kernel is compiled exactly once.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <string>
#include <type_traits>

#include "src/core/variant.h"
#include "src/cuda/flat/flat_kernel.cuh"
#include "src/cuda/launch_api.h"
#include "src/cuda/launch_common.cuh"
#include "src/cuda/launch_ws.cuh"
#include "src/cuda/params_host.h"
#include "src/cuda/policy/tile_size.h"
#include "src/cuda/runtime.h"
#include "src/cuda/sparse_host.h"
#include "src/cuda/sm80/flash_kernel.cuh"
#include "src/cuda/sm90/flash_kernel.cuh"

namespace flatattn::cuda {

template <Family F, int D, bool kBias = false>
using FlashShapeOf = FlashShape<D, flash_tile_for(F, D, kBias)>;
template <int D, bool kBias = false>
using Sm90ShapeOf = sm90::Shape<D, flash_tile_for(Family::sm90, D, kBias)>;
template <Family F, int D>
using FlatShapeOf = FlatShape<D, flat_tile(F, D)>;

/// Launches `kernel` over every (query block, head, sequence); raises the dynamic shared-memory limit
/// once per device.
template <class Kernel, class... Extra>
void launch_grid(Kernel kernel, int smem_bytes, int threads, int block_m, const LaunchArgs& a,
                 std::atomic<std::uint64_t>& attr_done, const Extra&... extra) {
  const Problem& pr = *a.problem;
  const std::int64_t n_m = (pr.nq + block_m - 1) / block_m;
  const std::int64_t ctas = n_m * pr.hq * pr.batch;
  if (ctas == 0) return;
  check_grid(ctas, "ceil(Nq / " + std::to_string(block_m) + ") * Hq * B");
  prepare_smem(kernel, smem_bytes, a.device, attr_done);
  const FwdParams p = make_params(pr, *a.tensors, a.meta_err);
  kernel<<<static_cast<unsigned>(ctas), threads, smem_bytes, static_cast<cudaStream_t>(a.stream)>>>(
      p, extra..., static_cast<int>(n_m), static_cast<int>(pr.hq));
  check(cudaGetLastError(), "kernel launch");
}

template <Family F, Dataflow DF, DType DT, int D, VariantId Var>
LaunchInfo launch_fwd(const LaunchArgs& a) {
  static_assert(DT == DType::f16 || DT == DType::bf16, "kernels store f16 or bf16");
  using E = std::conditional_t<DT == DType::bf16, BF16, F16>;
  using V = VariantOf<Var>;
  static std::atomic<std::uint64_t> attr_done{0};
  // Block-sparse (issue 16): the Flash kernels with block lists (sm80 family; sm90: the warp-specialized kernel where
  // ws_route.h picks it, else the wgmma Flash kernel at D = 64 and 128; dispatch picks them), never FLAT.
  if (a.problem->sparse.on && DF != Dataflow::flash)
    throw Error(Error::Kind::unsupported, "block_sparse", std::string("with the ") + name(F) + " " + std::string(name(DF)) + " forward",
                "block-sparse attention runs on the Flash forward kernels only (sm80 family; sm90; issue 16)",
                "use Dataflow::flash or automatic (dispatch picks them)");
  if constexpr (F == Family::sm90) {
    static_assert(DF == Dataflow::flash, "the sm90 family has the Flash forward only");
    if constexpr (ws_tile(D).block_n > 0) {
      // The warp-specialized TMA forward where the cost model (ws_route.h, policy/heuristics.h) or FLATATTN_CUDA_SM90_WS picks it
      // (ws_route.h: the same decision dispatch made).
      if (const int ws = ws_schedule_for(D, *a.problem, *a.tensors, Var)) {
        if constexpr (ws_serves_variant(Var, D)) {
          return ws == 1   ? launch_ws<E, D, V, 1>(a)
                 : ws == 2 ? launch_ws<E, D, V, 2>(a)
                           : launch_ws<E, D, V, 3>(a);
        } else {
          ws_refuse(std::string("the ") + variant_name(Var) + " variant at D = " + std::to_string(D),
                    "use another variant (the bias is not served; dropout needs 64-key blocks, not D = 256's 80)");
        }
      }
    }
    if constexpr (flash_tile(Family::sm90, D).block_m == 0) {
      // A head dim with only the warp-specialized kernel on this family (D = 256): dispatch sends a call here only
      // when ws_schedule_for picks that kernel (src/cuda/dispatch.cc), so this is never reached.
      throw Error(Error::Kind::runtime, "q", "D = " + std::to_string(D) + " on the sm90 family without the warp-specialized kernel",
                  "the sm90 family's only forward at this head dim is the warp-specialized one (dispatch routes the rest to the sm80 family)",
                  "report it (an internal routing error)");
    } else {
      using S = Sm90ShapeOf<D, Var == VariantId::bias>;
      using B = typename S::template Bias<V>;  // a staged bias: its slots after the K/V ring (bias_tile.cuh)
      if (a.problem->sparse.on) {  // the block lists' kernel (a separate function: the dense kernel is unchanged)
        check_sparse_tile(a.problem->sparse, S::kBlockM, S::kBlockN);
        static std::atomic<std::uint64_t> sparse_attr_done{0};
        if constexpr (B::kMaxBytes > 0)
          prepare_smem(sm90::flash_fwd_sparse_kernel<E, S, V>, S::kSmemBytes + B::kMaxBytes, a.device, sparse_attr_done);
        launch_grid(sm90::flash_fwd_sparse_kernel<E, S, V>, S::kSmemBytes + B::smem_bytes(a.problem->variant.bias_dtype),
                    S::kThreads, S::kBlockM, a, sparse_attr_done, a.problem->sparse);
        return {S::kBlockM, S::kBlockN};
      }
      if constexpr (B::kMaxBytes > 0) prepare_smem(sm90::flash_fwd_kernel<E, S, V>, S::kSmemBytes + B::kMaxBytes, a.device, attr_done);
      launch_grid(sm90::flash_fwd_kernel<E, S, V>, S::kSmemBytes + B::smem_bytes(a.problem->variant.bias_dtype),
                  S::kThreads, S::kBlockM, a, attr_done);
      return {S::kBlockM, S::kBlockN};
    }
  } else if constexpr (DF == Dataflow::flash) {
    using S = FlashShapeOf<F, D, Var == VariantId::bias>;
    // A staged bias (bias_tile.cuh): its slots after the K/V buffers, sized for the call's bias dtype; the
    // kernel's attribute is raised once for the largest (f32).
    using B = typename S::template Bias<F, V>;
    const int smem = S::kSmemBytes + B::smem_bytes(a.problem->variant.bias_dtype);
    if (a.problem->sparse.on) {  // the block lists' kernel (a separate function: the dense kernel is unchanged)
      check_sparse_tile(a.problem->sparse, S::kBlockM, S::kBlockN);
      static std::atomic<std::uint64_t> sparse_attr_done{0};
      if constexpr (B::kMaxBytes > 0)
        prepare_smem(flash_fwd_sparse_kernel<F, E, S, V>, S::kSmemBytes + B::kMaxBytes, a.device, sparse_attr_done);
      launch_grid(flash_fwd_sparse_kernel<F, E, S, V>, smem, S::kThreads, S::kBlockM, a, sparse_attr_done,
                  a.problem->sparse);
      return {S::kBlockM, S::kBlockN};
    }
    if constexpr (B::kMaxBytes > 0) prepare_smem(flash_fwd_kernel<F, E, S, V>, S::kSmemBytes + B::kMaxBytes, a.device, attr_done);
    launch_grid(flash_fwd_kernel<F, E, S, V>, smem, S::kThreads, S::kBlockM, a, attr_done);
    return {S::kBlockM, S::kBlockN};
  } else {
    static_assert(DF == Dataflow::flat, "an instance is Flash or FLAT");
    using S = FlatShapeOf<F, D>;
    launch_grid(flat_fwd_kernel<F, E, S, V>, S::kSmemBytes, S::kThreads, S::kBlockM, a, attr_done);
    return {S::kBlockM, S::kCapN};
  }
}

}  // namespace flatattn::cuda
