// Compiled when the build has no CUDA backend: CUDA tensors get a clear error, never a fallback.
#include "src/core/backend.h"

namespace flatattn::cuda {

namespace {
[[noreturn]] void no_cuda() {
  throw Error(Error::Kind::unsupported, "q.device", "cuda", "this flatattn build has no CUDA backend",
              "rebuild with -DFLATATTN_CUDA=ON on a machine with nvcc, or pass CPU tensors");
}
}  // namespace

bool built() { return false; }
Report forward(const Problem&, const FwdTensors&, Stream) { no_cuda(); }
Report backward(const Problem&, const BwdTensors&, Stream) { no_cuda(); }
Report forward_kvcache(const KvProblem&, const KvTensors&, Stream) { no_cuda(); }
void check_errors(int, Stream) { no_cuda(); }
void dropout_mask(std::uint8_t*, int, std::int64_t, std::int64_t, std::int64_t, std::int64_t, const DropoutStream&,
                  Stream) {
  no_cuda();
}

}  // namespace flatattn::cuda
