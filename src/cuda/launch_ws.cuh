// Host side of the warp-specialized forward (ws_fwd_kernel.cuh): what it serves, its tensor maps and its
// launch. Called by launch_fwd (src/cuda/launch.cuh) for the sm90 family's D = 64 / 128 instances when
// FLATATTN_CUDA_SM90_WS=1|2|3 (src/cuda/family.h sm90_ws_requested); included only by generated instance files
// (through launch.cuh).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <string>
#include <type_traits>

#include "flatattn/error.h"
#include "src/core/variant.h"
#include "src/cuda/common/dtype.cuh"
#include "src/cuda/family.h"
#include "src/cuda/launch_api.h"
#include "src/cuda/launch_common.cuh"
#include "src/cuda/params_host.h"
#include "src/cuda/tma_map.h"
#include "src/cuda/sm90/ws_fwd_kernel.cuh"

namespace flatattn::cuda {

/// Refuses what the warp-specialized forward does not serve yet (variants other than plain, varlen).
inline void ws_refuse(const std::string& value, const std::string& fix) {
  throw Error(Error::Kind::unsupported, "FLATATTN_CUDA_SM90_WS", value,
              "the warp-specialized sm90 forward serves the plain variant on batched problems (D = 64, 128) so far",
              fix + ", or unset FLATATTN_CUDA_SM90_WS");
}

/// kSched: FLATATTN_CUDA_SM90_WS's value (1, 2, 3), the consumers' schedule (ws_fwd_mainloop.cuh).
template <class E, int D, class V, int kSched>
LaunchInfo launch_ws(const LaunchArgs& a) {
  using S = sm90::WsShape<D>;
  static std::atomic<std::uint64_t> attr_done{0};
  const Problem& pr = *a.problem;
  const FwdTensors& t = *a.tensors;
  if (pr.varlen) ws_refuse("a varlen call (cu_seqlens)", "call without cu_seqlens");
  const std::int64_t n_m = (pr.nq + S::kBlockM - 1) / S::kBlockM;
  const std::int64_t ctas = n_m * pr.hq * pr.batch;
  if (ctas == 0) return {S::kBlockM, S::kBlockN, nullptr};
  check_grid(ctas, "ceil(Nq / " + std::to_string(S::kBlockM) + ") * Hq * B");

  sm90::WsParams wp;
  wp.p = make_params(pr, t, a.meta_err);
  constexpr bool kBf16 = std::is_same_v<E, BF16>;
  auto map = [&](const void* base, std::int64_t rows, std::int64_t heads, const auto& st, const char* what) {
    TileMapShape s;
    s.base = base;
    s.cols = pr.d;
    s.rows = rows;
    s.heads = heads;
    s.batch = pr.batch;
    s.s_row = st.n;
    s.s_head = st.h;
    s.s_batch = st.b;
    s.box_rows = what[0] == 'q' ? S::kBlockM : S::kBlockN;
    s.what = what;
    return make_tile_map(s, kBf16);
  };
  wp.tq = map(t.q, pr.nq, pr.hq, t.sq, "q");
  if (pr.nk > 0) {
    wp.tk = map(t.k, pr.nk, pr.hkv, t.sk, "k");
    wp.tv = map(t.v, pr.nk, pr.hkv, t.sv, "v");
  } else {  // Nk = 0: no key block is visited (O = 0, LSE = -inf); the maps only need a valid shape
    wp.tk = wp.tv = wp.tq;
  }

  auto kernel = sm90::ws_fwd_kernel<E, S, V, kSched>;
  prepare_smem(kernel, S::kSmemBytes, a.device, attr_done);
  kernel<<<static_cast<unsigned>(ctas), S::kThreads, S::kSmemBytes, static_cast<cudaStream_t>(a.stream)>>>(
      wp, static_cast<int>(n_m), static_cast<int>(pr.hq));
  check(cudaGetLastError(), "kernel launch (sm90 warp-specialized forward)");
  sm90_ws_count_launch();
  // The Report's kernel: the instance's name with the schedule, "flash_sm90_bf16_d128_ws1".
  static const std::string name = std::string("flash_sm90_") + std::string(kBf16 ? "bf16" : "f16") + "_d" +
                                  std::to_string(D) + "_ws" + std::to_string(kSched);
  return {S::kBlockM, S::kBlockN, name.c_str()};
}

}  // namespace flatattn::cuda
