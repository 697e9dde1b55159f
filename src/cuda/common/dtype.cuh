// Element types of the kernels and the conversions they need (fp32 <-> packed pairs of 16-bit values, and single
// values).
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
  FLATATTN_DEVICE static float to_float(T x) { return __half2float(x); }
  FLATATTN_DEVICE static T from_float(float x) { return __float2half_rn(x); }  ///< round to nearest even
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
  FLATATTN_DEVICE static float to_float(T x) { return __bfloat162float(x); }
  FLATATTN_DEVICE static T from_float(float x) { return __float2bfloat16_rn(x); }  ///< round to nearest even
};

}  // namespace flatattn::cuda
