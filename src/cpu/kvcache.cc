// Placeholder until the CPU KV-cache engine lands (next commit).
#include "src/core/backend.h"

namespace flatattn::cpu {
Report forward_kvcache(const KvProblem&, const KvTensors&) {
  throw Error(Error::Kind::unsupported, "q.device", "cpu", "the CPU KV-cache engine is not built yet",
              "use forward() on a gathered cache");
}
}  // namespace flatattn::cpu
