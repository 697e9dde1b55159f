// forward_kvcache(): validate (every check, metadata values on the CPU, before the append writes the cache),
// then hand the normalized KvProblem to the backend of the tensors' device.
#include <string>

#include "flatattn/error.h"
#include "flatattn/kvcache.h"
#include "src/core/backend.h"
#include "src/core/kv_problem.h"

namespace flatattn {

Report forward_kvcache(const KvCacheArgs& args, const Options& options, Stream stream) {
  if (options.fp32_matmul != Fp32Matmul::exact) {  // the decode path multiplies in fp32 only: refused, not ignored
    throw Error(Error::Kind::unsupported, "fp32_matmul", std::string(name(options.fp32_matmul)),
                "not served by forward_kvcache (its products are fp32 on the CPU, f16/bf16 on CUDA)",
                "leave Options::fp32_matmul at exact for forward_kvcache");
  }
  const ValidatedKvCache v = validate_kvcache(args, options);
  if (v.problem.device.kind == DeviceKind::cpu) return cpu::forward_kvcache(v.problem, v.tensors);
  return cuda::forward_kvcache(v.problem, v.tensors, stream);
}

}  // namespace flatattn
