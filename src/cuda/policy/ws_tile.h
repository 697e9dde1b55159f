// The tiles of the warp-specialized sm90 forward (src/cuda/sm90/ws_fwd_kernel.cuh), one row per head dim it is
// built for: 128 query rows per CTA (two consumer warpgroups of 64), the key block and the depth of the K/V ring.
// Host-visible (the launcher sizes its tensor maps' boxes from it, dispatch asks which D have the kernel); the
// kernel's WsShape<D> reads its row. A head dim without a row has no warp-specialized kernel.
//   D = 64:  128-key blocks, 3 slots: Q 16 KB + 3 x (K + V) 2 x 16 KB = 112 KB.
//   D = 128: 128-key blocks, 2 slots: Q 32 KB + 2 x 2 x 32 KB = 160 KB.
//   D = 256: 64-key blocks, 2 slots: Q 64 KB + 2 x 2 x 32 KB = 192 KB (of 227). A consumer thread holds O (64 rows
//            x 256 fp32 per warpgroup = 128 registers), S (32) and P (16); 128-key blocks would make that 224 of the
//            240 of setmaxnreg before addresses and row statistics. FlashAttention-3 (Shah et al. 2024;
//            hopper/tile_size.h) runs 128 x 80 at D = 256 (128 x 64 with a sliding window); 80 needs the
//            m64n80k16 wgmma, which wgmma_ops.cuh does not generate yet (tools/gen_wgmma.py): 64 until measured.
#pragma once

namespace flatattn::cuda {

struct WsTile {
  int d = 0;        ///< kernel head dim
  int block_n = 0;  ///< keys per block (0: no warp-specialized kernel at this D)
  int stages = 0;   ///< K/V ring slots
};

inline constexpr int kWsBlockM = 128;  ///< query rows per CTA (two consumer warpgroups)

inline constexpr WsTile kWsTiles[] = {
    {.d = 64, .block_n = 128, .stages = 3},
    {.d = 128, .block_n = 128, .stages = 2},
    {.d = 256, .block_n = 64, .stages = 2},
};

/// The row of head dim d; block_n == 0 when the warp-specialized forward is not built for d.
constexpr WsTile ws_tile(int d) {
  for (const WsTile& t : kWsTiles)
    if (t.d == d) return t;
  return {};
}

}  // namespace flatattn::cuda
