// Features of a kernel instance as one type (FlashInfer's "variant"): compile-time flags plus the
// hooks the kernels call. The mask is not part of it: causal (both alignments), sliding window and the
// ragged last key block are one runtime band (common/mask.cuh) applied only on blocks that cross it,
// so they cost no instances.
#pragma once

#include <cmath>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/params.h"

namespace flatattn::cuda {

template <bool Softcap>
struct Variant {
  static constexpr bool kSoftcap = Softcap;
  static constexpr const char* kSuffix = Softcap ? "_softcap" : "";

  /// Logit transform into log2 units when the scale is not folded into exp2 (see FwdParams):
  /// softcap: post * tanh(pre * s) (Gemma 2), otherwise pre * s.
  FLATATTN_DEVICE static float logits(float s, const FwdParams& p) {
    if constexpr (Softcap) {
      return p.post * tanhf(p.pre * s);
    } else {
      return p.pre * s;
    }
  }
};

}  // namespace flatattn::cuda
