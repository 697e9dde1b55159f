// The POD handed to the decode kernels (src/cuda/decode/): one forward_kvcache() call, validated and
// normalized on the host (forward_kvcache.cc builds it from KvProblem/KvTensors). Plain C++ (host and device).
//
// Addressing (src/core/kv_problem.h, one rule for paged and contiguous caches): key position t of sequence b
// is row t % page_size of page page_of(b, t / page_size), page_of = block_table[b, t / page_size] (paged) or
// cache_batch_idx[b] (contiguous: one page per cache row, page_size = capacity).
#pragma once

#include <cstdint>

#include "src/core/variant.h"

namespace flatattn::cuda {

struct DecodeParams {
  // Queries and outputs (B, Nq, Hq, D): element strides batch, row, head.
  const void* q = nullptr;  ///< the caller's q (rotated in the kernel when rotary_cos is set)
  std::int64_t q_b = 0, q_n = 0, q_h = 0;
  void* o = nullptr;
  std::int64_t o_b = 0, o_n = 0, o_h = 0;
  float* lse = nullptr;  ///< (B, Hq, Nq) strides lse_b, lse_h, lse_n; null: not requested
  std::int64_t lse_b = 0, lse_h = 0, lse_n = 0;
  // The cache (num_pages, page_size, Hkv, D).
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  std::int64_t kc_page = 0, kc_row = 0, kc_h = 0;
  std::int64_t vc_page = 0, vc_row = 0, vc_h = 0;
  int num_pages = 0;     ///< pages (contiguous: B_cache rows)
  int page_size = 0;     ///< tokens per page (contiguous: capacity)
  int page_shift = -1;   ///< log2(page_size) when a power of two, else -1
  int max_pages = 0;     ///< block_table columns (contiguous: 1)
  int capacity = 0;      ///< max_pages * page_size
  const int* block_table = nullptr;  ///< paged: (B, max_pages), row stride bt_stride; null: contiguous
  std::int64_t bt_stride = 0;
  const int* cache_seqlens = nullptr;    ///< (B), required
  const int* cache_batch_idx = nullptr;  ///< contiguous only; null: b
  const int* cache_leftpad = nullptr;    ///< null: 0
  /// Varlen queries (kvcache.h): (B + 1) offsets into the packed rows [0, total_q) of q/out (q_b = o_b =
  /// lse_b = 0 then); null: batched. nq is then the bound on every Nq_b (max_seqlen_q) that sizes the grid.
  const int* cu_seqlens_q = nullptr;
  int total_q = 0;
  // Shapes.
  int batch = 0, nq = 0, nnew = 0, hq = 0, hkv = 0, group = 1, d = 0;
  int rows = 0;        ///< group * nq: the rows of one (sequence, kv head), packed as r = i * group + g
                       ///< (varlen: the bound; sequence b has group * Nq_b of them, kv_meta.cuh KvSeq::nq)
  int row_blocks = 0;  ///< ceil(rows / 16)
  // The call's new tokens (kvcache.h semantics 1 and 3), fused into the decode kernel (new_rows.cuh): k_new
  // and v_new (B, Nnew, Hkv, D), element strides batch, row, head; null (and nnew = 0): no append.
  const void* k_new = nullptr;
  const void* v_new = nullptr;
  std::int64_t kn_b = 0, kn_n = 0, kn_h = 0;
  std::int64_t vn_b = 0, vn_n = 0, vn_h = 0;
  // Rotary (RoPE, src/core/rotary.h) of q and the new keys: the tables (max_position, rotary_dim / 2), row
  // stride rot_stride, in q's dtype; null: off (rotary_dim is then 0).
  const void* rotary_cos = nullptr;
  const void* rotary_sin = nullptr;
  std::int64_t rot_stride = 0;
  int interleaved = 0;
  int rotary_dim = 0, rotary_max_position = 0;
  int rotary_q_per_row = 0;  ///< 1: query i at cache_seqlens[b] + i (causal or window), 0: at cache_seqlens[b]
  // Logits in log2 units, as FwdParams: fold: x = s and p = exp2(x mul - m mul); else x = score(s), mul = 1.
  int fold = 1;
  float mul = 1.f;
  int left = -1, right = -1;  ///< the band (src/core/mask.h), always bottom-right aligned
  VariantData var{};
  const float* sinks = nullptr;  ///< (Hq) fp32; null: off
  // Split-KV: num_splits > 1 writes fp32 partials (o_part: (splits, rows_total, D), lse_part: (splits,
  // rows_total), rows_total = B * Nq * Hq, row index (b * Nq + i) * Hq + h) that the combine kernel merges.
  int num_splits = 1;
  float* o_part = nullptr;
  float* lse_part = nullptr;
  unsigned* meta_err = nullptr;  ///< the metadata error word (src/cuda/meta_check.h); null: not flagged
};

/// The LSE a split writes for rows of a sequence its metadata check refused: the combine kernel skips
/// such rows (a NaN whose payload no arithmetic produces).
constexpr unsigned kSkippedLseBits = 0x7fbadbadu;

}  // namespace flatattn::cuda
