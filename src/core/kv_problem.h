// The validated, normalized description of one forward_kvcache() call (include/flatattn/kvcache.h)
// that every backend receives. A contiguous cache is described as a paged one with one page per cache
// row (page_size = capacity) and the page of sequence b given by cache_batch_idx (or b), so a backend
// has a single addressing rule: key position t of sequence b lives in page page_of(b, t / page_size),
// row t % page_size.
#pragma once

#include <cstdint>

#include "flatattn/kvcache.h"
#include "src/core/mask.h"
#include "src/core/problem.h"
#include "src/core/variant.h"

namespace flatattn {

/// Element strides of a cache tensor (num_pages, page_size, Hkv, D): page, row within page, head.
struct PageStrides {
  std::int64_t page = 0, row = 0, h = 0;
};

struct KvProblem {
  DType dtype = DType::f16;
  Device device{};
  std::int64_t batch = 0;  ///< B
  std::int64_t nq = 0;     ///< new query tokens per sequence (>= 1); varlen: the bound on every Nq_b
  std::int64_t nnew = 0;   ///< new K/V tokens per sequence (0: no append)
  std::int64_t hq = 0, hkv = 0, d = 0;
  // Cache geometry (contiguous caches: see the file comment).
  bool paged = false;
  std::int64_t num_pages = 0;  ///< pages (contiguous: B_cache)
  std::int64_t page_size = 0;  ///< tokens per page (contiguous: capacity)
  std::int64_t max_pages = 0;  ///< block_table columns (contiguous: 1)
  std::int64_t capacity() const { return max_pages * page_size; }  ///< most tokens one sequence can hold
  // Metadata on `device` (int32). block_table: paged only, (B, max_pages) with row stride
  // block_table_stride; cache_batch_idx: contiguous only, null = identity; cache_leftpad: null = 0.
  const std::int32_t* block_table = nullptr;
  std::int64_t block_table_stride = 0;
  const std::int32_t* cache_seqlens = nullptr;
  const std::int32_t* cache_batch_idx = nullptr;
  const std::int32_t* cache_leftpad = nullptr;
  // Varlen queries (kvcache.h): q/out rows of sequence b are [cu_seqlens_q[b], cu_seqlens_q[b + 1]) of
  // total_q; null: batched (B, Nq). The row strides' batch term (sq.b, so.b, slse.b) is 0 then.
  const std::int32_t* cu_seqlens_q = nullptr;
  std::int64_t total_q = 0;
  // Rotary embedding (0: off).
  std::int64_t rotary_dim = 0;
  bool rotary_interleaved = false;
  std::int64_t rotary_max_position = 0;  ///< rows of rotary_cos/sin
  // Attention.
  float scale = 1.f;
  VariantArgs variant{};  ///< softcap, ALiBi (dropout is refused: inference)
  MaskSpec mask{};        ///< always bottom-right aligned to the keys' end
  int num_splits = 0;     ///< 0: the planner's
  int num_threads = 0;    ///< CPU workers; 0: all

  [[nodiscard]] std::int64_t group() const { return hq / hkv; }
  [[nodiscard]] bool varlen() const { return cu_seqlens_q != nullptr; }
  /// Host metadata only (CPU): the first q/out row of sequence b (batched: 0, with the batch stride) and
  /// its query count.
  [[nodiscard]] std::int64_t q_start(std::int64_t b) const { return varlen() ? cu_seqlens_q[b] : 0; }
  [[nodiscard]] std::int64_t nq_of(std::int64_t b) const {
    return varlen() ? std::int64_t{cu_seqlens_q[b + 1]} - cu_seqlens_q[b] : nq;
  }
};

struct KvTensors {
  const void* q = nullptr;
  void* k_cache = nullptr;  ///< written only by the append
  void* v_cache = nullptr;
  const void* k_new = nullptr;  ///< null: no append
  const void* v_new = nullptr;
  const void* rotary_cos = nullptr;  ///< null: no rotary; (rotary_max_position, rotary_dim / 2)
  const void* rotary_sin = nullptr;
  std::int64_t rotary_stride = 0;  ///< row stride of rotary_cos/sin (elements; both the same)
  void* o = nullptr;
  float* lse = nullptr;  ///< (B, Hq, Nq) with strides slse (b, h, n); null: not requested
  RowStrides sq, so, slse, sk_new, sv_new;
  PageStrides skc, svc;
  const float* sinks = nullptr;  ///< (Hq) fp32; null: off
};

struct ValidatedKvCache {
  KvProblem problem;
  KvTensors tensors;
};

/// The only place that turns KvCacheArgs into a KvProblem (src/core/validate_kvcache.cc). Throws
/// Error naming the argument before anything is written; CPU metadata values are checked here too.
ValidatedKvCache validate_kvcache(const KvCacheArgs& args, const Options& options);

}  // namespace flatattn
