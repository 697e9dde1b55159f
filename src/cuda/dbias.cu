#include "src/cuda/dbias.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "flatattn/error.h"

namespace flatattn::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void store_as(void* base, int dtype, std::int64_t off, float x) {
  if (dtype == static_cast<int>(DType::f32)) {
    static_cast<float*>(base)[off] = x;
  } else if (dtype == static_cast<int>(DType::bf16)) {
    static_cast<__nv_bfloat16*>(base)[off] = __float2bfloat16_rn(x);
  } else {
    static_cast<__half*>(base)[off] = __float2half_rn(x);
  }
}

/// One thread per element of g's rows (ob, oh, oi) x keys j: blockIdx.y = the row (ob, oh, oi), x = keys.
__global__ void dbias_finish_kernel(const float* ws, std::int64_t wb, std::int64_t wh, std::int64_t wq, BiasGrad g,
                                    bool zero) {
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= g.nk) return;
  const std::int64_t row = blockIdx.y + static_cast<std::int64_t>(blockIdx.z) * gridDim.y;
  if (row >= g.nb * g.nh * g.nq) return;
  const std::int64_t ob = row / (g.nh * g.nq), oh = row / g.nq % g.nh, oi = row % g.nq;
  float acc = 0.f;
  if (!zero) {
    const std::int64_t b0 = g.nb == wb ? ob : 0, b1 = g.nb == wb ? ob + 1 : wb;
    const std::int64_t h0 = g.nh == wh ? oh : 0, h1 = g.nh == wh ? oh + 1 : wh;
    const std::int64_t i0 = g.nq == wq ? oi : 0, i1 = g.nq == wq ? oi + 1 : wq;
    for (std::int64_t b = b0; b < b1; ++b)
      for (std::int64_t h = h0; h < h1; ++h)
        for (std::int64_t i = i0; i < i1; ++i) acc += ws[((b * wh + h) * wq + i) * g.nk + j];
  }
  store_as(g.data, static_cast<int>(g.dtype), ob * g.sb + oh * g.sh + oi * g.si + j, acc);
}

void launch(const float* ws, std::int64_t wb, std::int64_t wh, std::int64_t wq, const BiasGrad& g, bool zero,
            void* stream) {
  const std::int64_t rows = g.nb * g.nh * g.nq;
  if (rows == 0 || g.nk == 0) return;
  const std::int64_t ys = rows < 65535 ? rows : 65535;
  const dim3 grid(static_cast<unsigned>((g.nk + kThreads - 1) / kThreads), static_cast<unsigned>(ys),
                  static_cast<unsigned>((rows + ys - 1) / ys));
  dbias_finish_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(ws, wb, wh, wq, g, zero);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw Error(Error::Kind::runtime, "dbias", cudaGetErrorString(e), "the dbias kernel must launch",
                "check the device state (an earlier asynchronous error?)");
}

}  // namespace

void dbias_zero(const BiasGrad& g, void* stream) { launch(nullptr, g.nb, g.nh, g.nq, g, true, stream); }

void dbias_finish(const float* ws, std::int64_t wb, std::int64_t wh, std::int64_t wq, const BiasGrad& g, void* stream) {
  launch(ws, wb, wh, wq, g, false, stream);
}

}  // namespace flatattn::cuda
