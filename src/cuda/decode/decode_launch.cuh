// The definitions of the decode launchers (decode_launch.h); included only by the generated instance files
// (src/cuda/CMakeLists.txt), so each kernel is compiled once.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "src/cuda/common/pdl.cuh"
#include "src/cuda/decode/combine_kernel.cuh"
#include "src/cuda/decode/decode_kernel.cuh"
#include "src/cuda/decode/decode_launch.h"
#include "src/cuda/launch_common.cuh"
#include "src/cuda/runtime.h"

namespace flatattn::cuda {

template <DType Dt, int D, VariantId Vid>
void launch_decode(const DecodeParams& p, int device, void* stream) {
  static_assert(Dt == DType::f16 || Dt == DType::bf16, "decode kernels store f16 or bf16");
  using E = std::conditional_t<Dt == DType::bf16, BF16, F16>;
  using C = DecodeTile<D>;
  static std::atomic<std::uint64_t> attr_done{0};
  auto* kernel = decode_kernel<E, D, VariantOf<Vid>>;
  prepare_smem(kernel, C::kSmem, device, attr_done);
  const auto s = static_cast<cudaStream_t>(stream);
  const dim3 grid(static_cast<unsigned>(p.row_blocks), static_cast<unsigned>(p.num_splits),
                  static_cast<unsigned>(p.batch * p.hkv));
  // Each launch overlaps the tail of the kernel before it on the stream (programmatic dependent launch,
  // common/pdl.cuh; sm_90): at B = 1 the step is two short kernels and the gap between them counts.
  check(launch_pdl(kernel, grid, dim3(C::kThreads), C::kSmem, s, device, p), "decode kernel launch");
  if (p.num_splits > 1) {
    const std::int64_t rows = static_cast<std::int64_t>(p.batch) * p.nq * p.hq;
    check(launch_pdl(decode_combine_kernel<E, D>, dim3(static_cast<unsigned>(rows)), dim3(kCombineThreads), 0, s, device, p),
          "decode combine kernel launch");
  }
}

template <DType Dt, int D>
void launch_decode_cluster(const DecodeParams& p, int device, void* stream) {
  using E = std::conditional_t<Dt == DType::bf16, BF16, F16>;
  using C = DecodeTile<D>;
  static std::atomic<std::uint64_t> attr_done{0};
  auto* kernel = decode_kernel<E, D, VariantOf<VariantId::plain>, true>;
  prepare_smem(kernel, C::kSmem, device, attr_done);
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(p.row_blocks), static_cast<unsigned>(p.num_splits),
                     static_cast<unsigned>(p.batch * p.hkv));
  cfg.blockDim = dim3(C::kThreads);
  cfg.dynamicSmemBytes = C::kSmem;
  cfg.stream = static_cast<cudaStream_t>(stream);
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 1;
  attr[0].val.clusterDim.y = static_cast<unsigned>(p.num_splits);
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  check(cudaLaunchKernelEx(&cfg, kernel, p), "decode cluster kernel launch");
}

}  // namespace flatattn::cuda
