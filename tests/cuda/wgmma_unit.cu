// GPU unit test of the sm90 family's warpgroup products (src/cuda/sm90/wgmma.cuh) on their own, before
// any attention: one warpgroup loads A (64 x D), B (N x D) and V (N x D) into SmemTiles with the
// kernels' loader, computes S = A B^T (shared-memory descriptors, K-major) and O = P V (P given in the
// accumulator layout, packed to register A fragments; V MN-major, transposed), and writes both out in
// fp32 for a host product to check. Compiled for sm_90a only (tests/cuda/CMakeLists.txt).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "src/cuda/common/dtype.cuh"
#include "src/cuda/common/tile_io.cuh"
#include "src/cuda/common/warp_gemm.cuh"
#include "src/cuda/sm90/wgmma.cuh"
#include "tests/cuda/wgmma_unit.h"

namespace flatattn::testing {
namespace {

using namespace flatattn::cuda;

template <int D, int N>
__global__ void __launch_bounds__(128) wgmma_unit_kernel(const std::uint16_t* a, const std::uint16_t* b,
                                                        const std::uint16_t* v, const float* p, float* s_out,
                                                        float* o_out) {
  using TA = SmemTile<64, D>;
  using TB = SmemTile<N, D>;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const std::uint32_t raw = smem_u32(smem_raw);
  const std::uint32_t sa = (raw + 1023u) & ~1023u;
  const std::uint32_t sb = sa + TA::kBytes, sv = sb + TB::kBytes;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  load_tile<TA, D, 128>(sa, a, D, 64, D, a, tid);
  load_tile<TB, D, 128>(sb, b, D, N, D, b, tid);
  load_tile<TB, D, 128>(sv, v, D, N, D, v, tid);
  copy_commit();
  copy_wait<0>();
  sm90::fence_proxy_async();
  __syncthreads();

  const int r0 = warp * 16 + (lane >> 2), c0 = 2 * (lane & 3);
  float s[1][N / 8][4];
  sm90::wgmma_fence();
  sm90::gemm_qk_issue<BF16, TA, TB, N, D>(s[0], sa, sb);
  sm90::wgmma_wait<0>();
  sm90::fence_regs(s[0]);
  for (int i = 0; i < N / 8; ++i)
    for (int e = 0; e < 4; ++e) s_out[(r0 + 8 * (e / 2)) * N + 8 * i + c0 + (e & 1)] = s[0][i][e];

  // P (64 x N) read into the accumulator layout, then the kernels' packing.
  for (int i = 0; i < N / 8; ++i)
    for (int e = 0; e < 4; ++e) s[0][i][e] = p[(r0 + 8 * (e / 2)) * N + 8 * i + c0 + (e & 1)];
  std::uint32_t pa[1][N / 16][4];
  pack_p<BF16>(s, pa);
  float o[D / 8][4];
  for (int i = 0; i < D / 8; ++i)
    for (int e = 0; e < 4; ++e) o[i][e] = 0.f;
  sm90::fence_regs(o);
  sm90::wgmma_fence();
  sm90::gemm_pv_issue<BF16, TB, N, D>(o, pa[0], sv);
  sm90::wgmma_wait<0>();
  sm90::fence_regs(o);
  for (int i = 0; i < D / 8; ++i)
    for (int e = 0; e < 4; ++e) o_out[(r0 + 8 * (e / 2)) * D + 8 * i + c0 + (e & 1)] = o[i][e];
}

template <int D, int N>
std::string launch(const WgmmaUnitBuffers& buf) {
  const int smem = (64 + 2 * N) * D * 2 + 1024;
  auto kernel = wgmma_unit_kernel<D, N>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e == cudaSuccess) {
    kernel<<<1, 128, smem>>>(buf.a, buf.b, buf.v, buf.p, buf.s, buf.o);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
}

}  // namespace

std::string run_wgmma_unit(int d, int n, const WgmmaUnitBuffers& buf) {
  if (d == 64 && n == 128) return launch<64, 128>(buf);
  if (d == 128 && n == 128) return launch<128, 128>(buf);
  if (d == 128 && n == 64) return launch<128, 64>(buf);
  if (d == 256 && n == 64) return launch<256, 64>(buf);
  return "shape not instantiated";
}

}  // namespace flatattn::testing
