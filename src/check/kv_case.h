// One KV-cache case of the checks (forward_kvcache, include/flatattn/kvcache.h): shapes, cache layout and
// metadata (KvCase), and its host tensors (KvCaseTensors: inputs random, outputs poisoned), shared by the
// CPU, CUDA and core tests.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "flatattn/kvcache.h"
#include "src/check/host_tensor.h"

namespace flatattn::check {

struct KvCase {
  std::int64_t batch = 1, nq = 1, nnew = 0, hq = 1, hkv = 1, d = 64;  ///< B, Nq, Nnew, Hq, Hkv, D
  DType dtype = DType::f32;
  Options options{};
  bool paged = true;
  std::int64_t page_size = 16;                ///< paged: tokens per page
  std::vector<std::int32_t> seqlens;          ///< cache_seqlens (size B); empty: random in [0, max_context]
  std::int64_t max_context = 100;             ///< the random seqlens' bound
  bool shuffle_pages = true;                  ///< pages drawn in a random order from a pool with spare pages
  bool share_pages = false;                   ///< sequences b > 0 read the full cached pages of sequence 0
  bool leftpad = false;                       ///< random cache_leftpad in [0, seqlens[b]]
  bool batch_idx = false;                     ///< contiguous: a random cache_batch_idx into B + 2 cache rows
  std::int64_t rotary_dim = 0;                ///< 0: no rotary; else even, <= D
  bool rotary_interleaved = false;
  int alibi = 0;                              ///< 0 off, 1 (Hq), 2 (B, Hq) (BLOOM slopes)
  bool sinks = false;
  int num_splits = 0;
  /// Varlen queries (paged prefill, kvcache.h): Nq_b of each sequence (size B, any >= 0); empty: batched
  /// (B, Nq). Needs nnew = 0 and no rotary. q/out become (total_q, Hq, D), lse (Hq, total_q).
  std::vector<std::int32_t> q_lens;
  std::int64_t max_seqlen_q = -1;  ///< varlen: the value passed (-1: the longest Nq_b)
  [[nodiscard]] bool varlen() const { return !q_lens.empty(); }
  /// "bf16 B3 Nq1 Nnew1 Hq8 Hkv2 D64 paged16 ..." (the fields a failure needs to be read).
  [[nodiscard]] std::string name() const;
};

/// The tensors of a case. The cache rows no sequence reads (before cache_leftpad, past cache_seqlens, spare
/// pages) hold NaN: a backend that reads them (or multiplies them by a zero probability) fails the check.
struct KvCaseTensors {
  KvCase c;
  HostTensor q, k_new, v_new, k_cache, v_cache, rotary_cos, rotary_sin, out, lse, alibi, sinks;
  HostTensor block_table, cache_seqlens, cache_batch_idx, cache_leftpad;  ///< i32
  HostTensor cu_seqlens_q;  ///< i32 (B + 1), varlen cases only
  /// The views of a call (metadata on `device` as well: the CUDA tests copy the buffers first).
  [[nodiscard]] KvCacheArgs args(Device device = Device::cpu()) const;
  /// Physical row (page * page_size + row) of key position t of sequence b (the addressing of kv_problem.h).
  [[nodiscard]] std::int64_t physical_row(std::int64_t b, std::int64_t t) const;
  [[nodiscard]] std::int64_t page_size() const;  ///< contiguous: the capacity
};

KvCaseTensors make_kv_case(const KvCase& c, std::mt19937_64& rng);

/// Compares the caches after a call: the rows the call appended (their positions [cache_seqlens[b],
/// + Nnew)) within `ulps` units in the last place of the dtype (relative to the largest input of the row,
/// for the rotation's fp32 rounding) of `ref`'s, every other byte identical to `before`. Empty: pass;
/// otherwise the first difference, described.
std::string compare_caches(const KvCaseTensors& got, const KvCaseTensors& ref, const KvCaseTensors& before,
                           double ulps = 2.0);

}  // namespace flatattn::check
