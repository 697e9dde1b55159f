// Element types of the kernels and the conversions they need (fp32 <-> packed pairs of 16-bit values).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

/// fp16 storage, fp32 accumulation. Runs on both families.
struct F16 {
  using T = __half;
  static constexpr bool kIsBf16 = false;
  static constexpr const char* kName = "f16";
  FLATATTN_DEVICE static std::uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<std::uint32_t*>(&h);
  }
};

/// bf16 storage, fp32 accumulation. SASS families only (Turing tensor cores have no bf16).
struct BF16 {
  using T = __nv_bfloat16;
  static constexpr bool kIsBf16 = true;
  static constexpr const char* kName = "bf16";
  FLATATTN_DEVICE static std::uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<std::uint32_t*>(&h);
  }
};

}  // namespace flatattn::cuda
