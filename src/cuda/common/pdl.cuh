// Programmatic dependent launch (PDL, sm_90; CUDA Programming Guide, "Programmatic Dependent Launch and
// Synchronization"; PTX ISA, griddepcontrol): a kernel launched with the programmatic stream serialization
// attribute may start while the kernel before it on the stream is still running, so its launch and the set-up
// of its CTAs overlap that kernel's tail. Correctness rests on one rule: a dependent kernel calls pdl_wait()
// before it reads or writes any global memory that earlier work on the stream may touch; the wait returns when
// the preceding grid has completed and its writes are visible. pdl_launch_dependents() lets the next kernel
// start launching before this one ends (without it, that happens at the end).
// Used by the decode step (decode -> split-KV combine: two short kernels at B = 1, where the gap between
// launches is a visible part of the step). Below sm_90 both calls are no-ops and launch_pdl launches
// normally.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <string_view>

#include "flatattn/error.h"
#include "src/cuda/runtime.h"

namespace flatattn::cuda {

/// Waits until the grids this one depends on (the previous kernel on the stream) have completed and their
/// memory is visible. Call before the first global access; a no-op without PDL or below sm_90.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// Allows the next kernel on the stream (launched with PDL) to begin launching now.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/// FLATATTN_CUDA_PDL (read once per process): "1": launch_pdl uses PDL where the device has it; unset, empty or "0":
/// plain launches (pdl_wait() then returns at once); any other value throws an Error naming the variable. Off by
/// default since the H100 A/B of 2026-12-07 (bench/results/decode-pdl-h100-5df6c54.md): PDL bought nothing on any
/// decode shape and cost 2-7 % on B = 1 GQA split-KV steps (split kernel + combine).
inline bool pdl_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("FLATATTN_CUDA_PDL");
    if (env == nullptr || env[0] == '\0' || std::string_view(env) == "0") return false;
    if (std::string_view(env) == "1") return true;
    throw Error(Error::Kind::invalid_argument, "FLATATTN_CUDA_PDL", env, "0, 1 or unset",
                "set it to 1 (programmatic dependent launch on sm_90 and newer), 0 or unset it (plain launches)");
  }();
  return on;
}

/// Launches kernel<<<grid, block, smem, stream>>>(args...) with programmatic stream serialization on devices of
/// compute capability 9.0 and newer (the kernel must call pdl_wait() first), a plain launch elsewhere and under
/// FLATATTN_CUDA_PDL=0.
template <class... Params, class... Args>
cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, int smem, cudaStream_t stream, int device,
                       Args&&... args) {
  if (device_info(device).cc < 90 || !pdl_enabled()) {
    kernel<<<grid, block, smem, stream>>>(static_cast<Args&&>(args)...);
    return cudaGetLastError();
  }
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<Args&&>(args)...);
}

}  // namespace flatattn::cuda
