// The ring's input checks: this rank's shards (local, without communication), then the agreement of every rank
// on shapes and options (a small descriptor passed W - 1 hops around the ring), so a bad argument on one rank
// raises an Error on every rank instead of leaving the others waiting.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "flatattn/context_parallel.h"

namespace flatattn::cp {

/// This rank's shapes (q: (B, n, Hq, D), k/v: (B, n, Hkv, D)).
struct RingShape {
  std::int64_t batch = 0, n = 0, hq = 0, hkv = 0, d = 0;
  DType dtype = DType::f32;
  Device device{};
  std::vector<std::int64_t> cu_seqlens;  ///< document boundaries (empty: one document)
};

/// The first problem with this rank's forward (backward = false) or backward arguments, or nullopt; `shape` is
/// filled from q, k when they are usable. Views not used by the direction are ignored.
std::optional<Error> check_local(const RingBackwardArgs& a, bool backward, const RingTransport& transport,
                                 SeqLayout layout, const Options& o, RingShape& shape);

/// Exchanges every rank's (error flag, shape, options) around the ring and throws on every rank when any rank
/// had a local error (`local`: that rank throws its own) or when two ranks differ (naming the field and ranks).
void agree(RingTransport& transport, SeqLayout layout, const Options& o, const RingShape& shape, bool backward,
           const std::optional<Error>& local, Stream stream);

}  // namespace flatattn::cp
