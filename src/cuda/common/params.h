// The POD handed to every forward kernel: pointers, element strides, lengths, the logit transform and
// the mask, already validated and normalized on the host (src/cuda/launch_common.h builds it).
#pragma once

#include <cstdint>

#include "src/core/variant.h"

namespace flatattn::cuda {

struct FwdParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  ///< null: not requested
  // Element strides: batch, sequence row, head (the head dim is contiguous). Varlen: batch unused.
  std::int64_t q_b = 0, q_n = 0, q_h = 0;
  std::int64_t k_b = 0, k_n = 0, k_h = 0;
  std::int64_t v_b = 0, v_n = 0, v_h = 0;
  std::int64_t o_b = 0, o_n = 0, o_h = 0;
  std::int64_t lse_b = 0, lse_n = 0, lse_h = 0;
  int nq = 0, nk = 0;        ///< batched lengths (varlen: from cu_seqlens)
  int group = 1;             ///< Hq / Hkv: query head h reads kv head h / group
  int d = 0;                 ///< the caller's head dim (<= the kernel's; the rest is zero padding)
  const int* cu_q = nullptr;  ///< varlen offsets (B + 1), null when batched
  const int* cu_k = nullptr;
  unsigned* meta_err = nullptr;  ///< varlen: where kernels flag bad metadata (common/block_info.cuh MetaError)
  int total_q = 0, total_k = 0;  ///< varlen: packed rows of q/out/lse and k/v; no row at or past them is touched
  // Logits in log2 units: x = (fold ? s : score(s)), p = exp2(x * mul - max * mul), score = the variant's
  // hook (src/core/variant.h) with var = make_variant_data(args, scale, log2 e).
  // fold (scale > 0 and a variant without a score transform): mul = scale * log2(e) and the scale rides
  // on the exp2 FFMA. Otherwise mul = 1 and the score applies the scale (plain: x = scale log2(e) s).
  int fold = 1;
  float mul = 1.f;
  // Band mask in sequence coordinates (src/core/mask.h): row i sees keys [lo(i), hi(i)] with
  // diag(i) = i + (bottom_right ? nk - nq : 0); left/right < 0 mean unbounded.
  int bottom_right = 1;
  int left = -1, right = -1;
  // Last, so the fields above keep their offsets whatever the variant data holds (ALiBi's slopes pointer
  // made it 8-byte aligned; dropout's stream added 24 bytes: 224 -> 288 bytes with the sinks pointer and the
  // varlen metadata fields; the additive bias's pointer, strides and extents: 288 -> 336; dropout's position offsets
  // (context parallelism): 336 -> 344).
  VariantData var{};  ///< the variant hooks' per-call data
  /// Attention sinks (Hq) fp32, natural-log units, applied in the forward's finalization (add_sinks,
  /// common/softmax.cuh); null: off. Not a variant: every instance serves it at one branch per CTA.
  const float* sinks = nullptr;
};

}  // namespace flatattn::cuda
