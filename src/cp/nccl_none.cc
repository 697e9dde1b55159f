// nccl_transport in a build without NCCL (-DFLATATTN_NCCL=OFF, the default): a clear error.
#include "flatattn/context_parallel.h"

namespace flatattn {

std::unique_ptr<RingTransport> nccl_transport(void*, int, int, Stream) {
  throw Error(Error::Kind::unsupported, "nccl_transport", "not built", "this flatattn build has no NCCL transport",
              "rebuild with -DFLATATTN_CUDA=ON -DFLATATTN_NCCL=ON (-DNCCL_ROOT=<dir with include/ and lib/>), or use "
              "LocalRing within one process");
}

bool nccl_built() { return false; }

}  // namespace flatattn
