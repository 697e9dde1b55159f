// The ring's CUDA work in a build without CUDA: CUDA tensors get a clear error, never a fallback.
#include "src/cp/ring_ops.h"

namespace flatattn::cp::cuda_ops {

namespace {
[[noreturn]] void no_cuda() {
  throw Error(Error::Kind::unsupported, "q.device", "cuda", "this flatattn build has no CUDA backend",
              "rebuild with -DFLATATTN_CUDA=ON on a machine with nvcc, or pass CPU tensors");
}
}  // namespace

void* alloc(int, std::size_t) { no_cuda(); }
void release(int, void*) {}
void fill(const TensorView&, float, Stream) { no_cuda(); }
void copy(const TensorView&, const TensorView&, Stream) { no_cuda(); }
void add(const TensorView&, const TensorView&, Stream) { no_cuda(); }
void merge(const TensorView&, const TensorView&, const TensorView&, const TensorView&, Stream) { no_cuda(); }
void copy_bytes(void*, const void*, std::size_t, int, Stream) { no_cuda(); }
void synchronize(int, Stream) { no_cuda(); }

}  // namespace flatattn::cp::cuda_ops
