// The sm_90a unit kernel of tests/cuda/wgmma_unit.cu, called by tests/cuda/test_sm90.cc.
#pragma once

#include <cstdint>
#include <string>

namespace flatattn::testing {

/// Device buffers (row-major): a 64 x d, b and v n x d (bf16 bits), p 64 x n (fp32, bf16-representable),
/// outputs s 64 x n and o 64 x d (fp32).
struct WgmmaUnitBuffers {
  const std::uint16_t *a, *b, *v;
  const float* p;
  float *s, *o;
};

/// Runs S = A B^T and O = P V on one warpgroup; returns "" or the CUDA error. Shapes (d, n):
/// (64, 128), (128, 128), (128, 64), (256, 64).
std::string run_wgmma_unit(int d, int n, const WgmmaUnitBuffers& buf);

}  // namespace flatattn::testing
