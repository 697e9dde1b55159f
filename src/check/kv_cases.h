// The KV-cache feature table (forward_kvcache, include/flatattn/kvcache.h): named cases that together cover
// the contract -- page sizes 1..256, shuffled and shared pages, contiguous caches with cache_batch_idx,
// empty/one-token/ragged caches, leftpad, both rotary layouts and rotary_dim < D, decode and chunked prefill
// with causal and windows, GQA/MQA, softcap, ALiBi, sinks, split counts -- and the random generator of the
// sweeps. The CPU tests (tests/cpu/test_kvcache.cc) run every entry; the CUDA tests run the same list on
// the device through check_kvcache (src/check/kv_check.h).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "src/check/kv_case.h"

namespace flatattn::check {

struct KvFeature {
  std::string name;  ///< identifier for test names: "page1", "rope_neox_causal", ...
  KvCase c;          ///< the case (its dtype is set by kv_features)
};

/// The small GQA decode case the tables and tests start from: B = 3, one query and one new token per
/// sequence, Hq 8 / Hkv 2, head dim d, caches up to max_context keys, LSE returned.
KvCase kv_base(DType dt, std::int64_t d, std::int64_t max_context);

/// Every KV-cache feature case in dtype dt (f16/bf16 for CUDA; f32 as well on the CPU).
std::vector<KvFeature> kv_features(DType dt);

/// A random KV-cache case in dtype dt (shapes, layout, metadata, rotary, masks, features, splits): the
/// sweeps' generator. max_context bounds the cache lengths (the oracle is O(Nq n_k D) per head).
KvCase kv_random_case(std::mt19937_64& rng, DType dt, std::int64_t max_context = 400);

}  // namespace flatattn::check
