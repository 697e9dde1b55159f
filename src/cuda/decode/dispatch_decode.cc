// TEMPORARY (feat/kv-cpu): the CUDA half of forward_kvcache is written on feat/kv-cuda, which replaces
// this file. Until then a CUDA build links and a CUDA KV-cache call is refused with a clear error.
#include "src/core/backend.h"

namespace flatattn::cuda {
Report forward_kvcache(const KvProblem&, const KvTensors&, Stream) {
  throw Error(Error::Kind::unsupported, "q.device", "cuda",
              "this build has no CUDA KV-cache kernels yet (forward_kvcache runs on the CPU only)",
              "pass CPU tensors, or use a build with the CUDA decode kernels (src/cuda/decode)");
}
}  // namespace flatattn::cuda
