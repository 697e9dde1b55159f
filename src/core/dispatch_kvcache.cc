// forward_kvcache(): validate (every check, metadata values on the CPU, before the append writes the cache),
// then hand the normalized KvProblem to the backend of the tensors' device.
#include "flatattn/kvcache.h"
#include "src/core/backend.h"
#include "src/core/kv_problem.h"

namespace flatattn {

Report forward_kvcache(const KvCacheArgs& args, const Options& options, Stream stream) {
  const ValidatedKvCache v = validate_kvcache(args, options);
  if (v.problem.device.kind == DeviceKind::cpu) return cpu::forward_kvcache(v.problem, v.tensors);
  return cuda::forward_kvcache(v.problem, v.tensors, stream);
}

}  // namespace flatattn
