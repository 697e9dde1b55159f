// The oracle of forward_kvcache (include/flatattn/kvcache.h): naive and obviously right. It performs the
// append (with rotary) into the cache in fp64, rounding each stored element once to the cache dtype (the
// cache is stored in its dtype, as every backend stores it), then, for each sequence, gathers its keys and
// values through the page table into a contiguous tensor and runs the fp64 attention oracle (ref::forward,
// src/reference/reference.h) on them with the rotated queries: the mask, ALiBi, softcap and sinks are
// exactly forward()'s, with the keys [cache_leftpad[b], cache_seqlens[b] + Nnew) and the queries aligned to
// their end.
#pragma once

#include "flatattn/kvcache.h"
#include "src/reference/reference.h"

namespace flatattn::ref {

/// Same arguments and semantics as flatattn::forward_kvcache, CPU tensors only; writes the cache (the
/// append), out and lse. out and lse may be any float dtype (f64 keeps full precision). Precision::input
/// gives the naive low-precision yardstick of the correctness rule: the rotated queries are rounded to
/// q's dtype and the attention is ref::forward's Precision::input.
void forward_kvcache(const KvCacheArgs& args, const Options& options = {}, Precision precision = Precision::f64);

}  // namespace flatattn::ref
