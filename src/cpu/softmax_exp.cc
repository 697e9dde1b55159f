#include "src/cpu/softmax_exp.h"

#include "src/cpu/simd.h"

namespace flatattn::cpu {

bool exp_nonpos_into(const float* x, float* y, std::int64_t n) {
  for (std::int64_t i0 = 0; i0 < n; i0 += simd::kWidth) {
    simd::vf v = simd::splat(0.f);
    for (int l = 0; l < simd::kWidth && i0 + l < n; ++l) v[l] = x[i0 + l];
    const simd::vf e = simd::exp_nonpos(v);
    for (int l = 0; l < simd::kWidth && i0 + l < n; ++l) y[i0 + l] = e[l];
  }
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  return true;
#else
  return false;
#endif
}

}  // namespace flatattn::cpu
