// The padding copies of pad_rows.h: one thread per 16-byte chunk (8 elements) of the dense side, so its
// accesses are 16-byte and coalesced; the view side moves element by element (any strides, any D), and
// neighbouring threads still touch neighbouring elements of a row. Grid-stride loops over 32-bit indices
// where every index fits (a 64-bit division costs several times more), else 64-bit ones.
#include "src/cuda/pad_rows.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "src/cuda/runtime.h"

namespace flatattn::cuda {

namespace {

constexpr int kThreads = 256;

/// Element offset of dense chunk `i`'s row in the view (its column 0); *c0: the chunk's first column,
/// *n_out: the row's index n within its batch. I: the index type of the divisions (32-bit when every
/// index fits: a 64-bit division costs several times more).
template <class I>
__device__ __forceinline__ std::int64_t view_row(I i, const PadShape& sh, const RowStrides& s, int* c0,
                                                 std::int64_t* n_out) {
  const I chunks = static_cast<I>(sh.d8 / 8), heads = static_cast<I>(sh.heads), n_rows = static_cast<I>(sh.n);
  const I row = i / chunks;  // (b N + n) H + h
  *c0 = static_cast<int>(i - row * chunks) * 8;
  const I bn = row / heads, h = row - bn * heads;
  const I b = bn / n_rows, n = bn - b * n_rows;
  *n_out = static_cast<std::int64_t>(n);
  return static_cast<std::int64_t>(b) * s.b + static_cast<std::int64_t>(n) * s.n + static_cast<std::int64_t>(h) * s.h;
}

template <class I>
__global__ void pad_kernel(const std::uint16_t* __restrict__ src, RowStrides s, uint4* __restrict__ dst, PadShape sh,
                           I chunks) {
  for (I i = blockIdx.x * I{kThreads} + threadIdx.x; i < chunks; i += I{gridDim.x} * kThreads) {
    int c0;
    std::int64_t n;
    const std::uint16_t* g = src + view_row(i, sh, s, &c0, &n);
    std::uint16_t e[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) e[j] = c0 + j < sh.d ? g[c0 + j] : std::uint16_t{0};
    uint4 v;
    v.x = e[0] | static_cast<unsigned>(e[1]) << 16;
    v.y = e[2] | static_cast<unsigned>(e[3]) << 16;
    v.z = e[4] | static_cast<unsigned>(e[5]) << 16;
    v.w = e[6] | static_cast<unsigned>(e[7]) << 16;
    dst[i] = v;
  }
}

template <class I>
__global__ void unpad_kernel(const uint4* __restrict__ src, std::uint16_t* __restrict__ dst, RowStrides s, PadShape sh,
                             I chunks, const std::int32_t* row_end) {
  // row_end (varlen's cu_seqlens[B]) is device metadata: bounded by the tensor's rows whatever it holds.
  const std::int64_t end = row_end != nullptr ? min(max(std::int64_t{*row_end}, std::int64_t{0}), std::int64_t{sh.n}) : sh.n;
  for (I i = blockIdx.x * I{kThreads} + threadIdx.x; i < chunks; i += I{gridDim.x} * kThreads) {
    int c0;
    std::int64_t n;
    std::uint16_t* g = dst + view_row(i, sh, s, &c0, &n);
    if (n >= end) continue;
    const uint4 v = src[i];
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (c0 + j < sh.d) g[c0 + j] = static_cast<std::uint16_t>(w[j / 2] >> (16 * (j % 2)));
  }
}

/// Blocks for `chunks` threads' work, capped (grid-stride loops take the rest).
unsigned blocks_for(std::int64_t chunks) {
  constexpr std::int64_t kMaxBlocks = std::int64_t{1} << 20;
  return static_cast<unsigned>(std::min(kMaxBlocks, (chunks + kThreads - 1) / kThreads));
}

/// Whether every index of a copy of `chunks` chunks (the grid-stride loop's last step included) fits 32 bits.
bool fits_u32(std::int64_t chunks) {
  return chunks + std::int64_t{blocks_for(chunks)} * kThreads <= std::int64_t{UINT32_MAX};
}

}  // namespace

void pad_rows(const void* src, const RowStrides& s, void* dst, const PadShape& shape, void* stream) {
  const std::int64_t chunks = shape.elements() / 8;
  if (chunks == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  const auto* in = static_cast<const std::uint16_t*>(src);
  auto* out = static_cast<uint4*>(dst);
  if (fits_u32(chunks)) {
    pad_kernel<std::uint32_t><<<blocks_for(chunks), kThreads, 0, st>>>(in, s, out, shape, static_cast<std::uint32_t>(chunks));
  } else {
    pad_kernel<std::int64_t><<<blocks_for(chunks), kThreads, 0, st>>>(in, s, out, shape, chunks);
  }
  check(cudaGetLastError(), "padding copy launch (pad_rows)");
}

void unpad_rows(const void* src, void* dst, const RowStrides& s, const PadShape& shape, const std::int32_t* row_end,
                void* stream) {
  const std::int64_t chunks = shape.elements() / 8;
  if (chunks == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  const auto* in = static_cast<const uint4*>(src);
  auto* out = static_cast<std::uint16_t*>(dst);
  if (fits_u32(chunks)) {
    unpad_kernel<std::uint32_t><<<blocks_for(chunks), kThreads, 0, st>>>(in, out, s, shape,
                                                                         static_cast<std::uint32_t>(chunks), row_end);
  } else {
    unpad_kernel<std::int64_t><<<blocks_for(chunks), kThreads, 0, st>>>(in, out, s, shape, chunks, row_end);
  }
  check(cudaGetLastError(), "padding copy launch (unpad_rows)");
}

}  // namespace flatattn::cuda
