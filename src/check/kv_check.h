// The check of one forward_kvcache case under the project's rule (src/check/rule.h): the backend's out and
// lse against the fp64 oracle (src/reference/reference_kvcache.h) with the oracle's low-precision run as the
// yardstick, and the cache after the append against the oracle's (appended rows within 2 ulps, every other
// byte unchanged). Shared by the CPU and CUDA tests.
#pragma once

#include <functional>
#include <random>
#include <string>

#include "src/check/kv_case.h"
#include "src/check/rule.h"

namespace flatattn::check {

struct KvVerdict {
  Verdict out, lse;      ///< lse.pass is true when the case returns no LSE
  std::string cache;     ///< empty: the caches agree; else the first difference
  std::string kernel;    ///< Report::kernel of the run
  [[nodiscard]] bool pass() const { return out.pass && lse.pass && cache.empty(); }
  [[nodiscard]] std::string detail() const;
};

/// Builds case c (fresh random tensors from rng), runs `run` on them (it calls forward_kvcache on
/// t.args() or copies to a device and back into t: out, lse, k_cache, v_cache) and judges the result.
/// `cuda` selects the LSE tolerance (lse_tolerance).
KvVerdict check_kvcache(const KvCase& c, std::mt19937_64& rng, const std::function<Report(KvCaseTensors&)>& run,
                        bool cuda = false);

}  // namespace flatattn::check
