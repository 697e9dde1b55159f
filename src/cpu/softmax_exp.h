// The softmax's exponent as the engine's sources compile it: simd::exp_nonpos under the engine's flags (AVX-512
// where the build has it, src/cpu/CMakeLists.txt), reachable from code built with other flags (the tests).
#pragma once

#include <cstdint>

namespace flatattn::cpu {

/// y[i] = e^x[i] for i < n (fp32), through simd::exp_nonpos in vectors of 16 lanes (the tail padded with 0).
/// Returns true when the AVX-512 form ran (2^t by VREDUCEPS, a polynomial and VSCALEFPS), false for the portable
/// exp. n < 0 is treated as 0.
bool exp_nonpos_into(const float* x, float* y, std::int64_t n);

}  // namespace flatattn::cpu
