// flatattn::dropout_mask on CUDA: one thread per Philox call (16 elements of a row: keys 64 a + 2 q + 8 w + e,
// src/core/philox.h), so the device evaluates the same function as the kernels and the CPU. Compiled once per
// family like probe.cu (FLATATTN_PROBE_FAMILY names the entry dropout_mask_<family>).
#include <cuda_runtime.h>

#include "src/core/philox.h"
#include "src/cuda/launch_api.h"

#define FLATATTN_MASK_CAT2(a, b) a##b
#define FLATATTN_MASK_CAT(a, b) FLATATTN_MASK_CAT2(a, b)

namespace flatattn::cuda {

namespace {

/// Thread t: row r = t / calls_per_row of the (B, Hq, Nq) rows, key group (a, q) = ((t % n) / 4, t % 4).
__global__ void FLATATTN_MASK_CAT(FLATATTN_MASK_CAT(dropout_mask_, FLATATTN_PROBE_FAMILY), _kernel)(
    std::uint8_t* mask, std::int64_t calls, std::int64_t calls_per_row, int hq, int nq, int nk, DropoutStream s) {
  for (std::int64_t t = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; t < calls;
       t += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = t / calls_per_row;
    const int c = static_cast<int>(t % calls_per_row);
    const int i = static_cast<int>(r % nq), bh = static_cast<int>(r / nq);
    const int b = bh / hq, h = bh % hq;
    const int j0 = (c >> 2) * kDropoutColAlign + (c & 3) * 2;  // the group's first key
    // col0 % kDropoutColAlign == 0: key j reads byte 2 w + e of the call at the shifted position too
    const Philox4 o = dropout_block(s.k0, s.k1, s.c3, s.hq, b, h + s.bh0, i + s.row0, j0 + s.col0);
    std::uint8_t* out = mask + r * nk;
#pragma unroll
    for (int w = 0; w < 8; ++w)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int j = j0 + 8 * w + e;
        if (j < nk) out[j] = dropout_byte_at(o, 2 * w + e) >= s.threshold ? 1 : 0;
      }
  }
}

}  // namespace

int FLATATTN_MASK_CAT(dropout_mask_, FLATATTN_PROBE_FAMILY)(std::uint8_t* mask, std::int64_t batch, std::int64_t hq,
                                                            std::int64_t nq, std::int64_t nk, const DropoutStream& s,
                                                            void* stream) {
  const std::int64_t calls_per_row = (nk + kDropoutColAlign - 1) / kDropoutColAlign * 4;
  const std::int64_t calls = batch * hq * nq * calls_per_row;
  const int threads = 256;
  const std::int64_t blocks = std::min<std::int64_t>((calls + threads - 1) / threads, 65535);
  FLATATTN_MASK_CAT(FLATATTN_MASK_CAT(dropout_mask_, FLATATTN_PROBE_FAMILY), _kernel)<<<
      static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(
      mask, calls, calls_per_row, static_cast<int>(hq), static_cast<int>(nq), static_cast<int>(nk), s);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace flatattn::cuda
