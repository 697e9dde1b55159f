// The tiles of the warp-specialized sm90 forward (src/cuda/sm90/ws_fwd_kernel.cuh), one row per head dim it is
// built for: the query rows per CTA (one consumer warpgroup per 64 rows), the key block and the depth of the K/V ring.
// Host-visible (the launcher sizes its tensor maps' boxes from it, dispatch asks which D have the kernel); the
// kernel's WsShape<D> reads its row. A head dim without a row has no warp-specialized kernel.
//   D = 64:  128 query rows (two consumer warpgroups), 128-key blocks, 3 slots: Q 16 KB + 3 x (K + V) 2 x 16 KB =
//            112 KB. FlashAttention-3's D <= 64 tile (hopper/tile_size.h) is 192 rows: .block_m = 192, .consumers = 3,
//            .consumer_regs = 160 (24 x 128 + 160 x 384 = 64512) and the planner's schedule 1 (ping-pong pairs two
//            consumers) build it. On the H100 it ran 1.05-1.13x cuDNN at N >= 8k against 0.78-0.94x for this row
//            (bench/results/ws192-d64-h100-51c5682.md), but its correctness suites have not run on a GPU yet (stop 28),
//            so the default keeps this row until they have.
//   D = 128: 128-key blocks, 2 slots: Q 32 KB + 2 x 2 x 32 KB = 160 KB.
//   D = 256: 64-key blocks, 2 slots: Q 64 KB + 2 x 2 x 32 KB = 192 KB (of 227). A consumer thread holds O (64 rows
//            x 256 fp32 per warpgroup = 128 registers), S (32) and P (16) of the 240 of setmaxnreg; 128-key blocks would
//            make that 224 before addresses and row statistics. FlashAttention-3 (Shah et al. 2024; hopper/tile_size.h)
//            runs 128 x 80 here: block_n = 80 compiles (the m64n80k16 wgmma of tools/gen_wgmma.py; 224 KB, 168
//            registers, no spills) but has never run on a GPU, so the row stays at 64 until its tests and a
//            measurement against this one have (stop 28). With 80, dropout leaves the kernel (ws_route.h).
#pragma once

namespace flatattn::cuda {

struct WsTile {
  int d = 0;          ///< kernel head dim
  int block_m = 0;    ///< query rows per CTA: 64 per consumer warpgroup
  int block_n = 0;    ///< keys per block (0: no warp-specialized kernel at this D)
  int stages = 0;     ///< K/V ring slots
  int consumers = 0;  ///< consumer warpgroups (block_m / 64)
  int consumer_regs = 0;  ///< setmaxnreg of a consumer thread (the producer warpgroup keeps kWsProducerRegs)
};

inline constexpr int kWsProducerRegs = 24;  ///< setmaxnreg of the producer warpgroup (it only issues TMA)

inline constexpr WsTile kWsTiles[] = {
    {.d = 64, .block_m = 128, .block_n = 128, .stages = 3, .consumers = 2, .consumer_regs = 240},
    {.d = 128, .block_m = 128, .block_n = 128, .stages = 2, .consumers = 2, .consumer_regs = 240},
    {.d = 256, .block_m = 128, .block_n = 64, .stages = 2, .consumers = 2, .consumer_regs = 240},
};

/// The CTA's threads and the registers it holds at launch, which setmaxnreg only moves between warpgroups
/// (one CTA per SM): (1 + consumers) warpgroups of 128 threads.
constexpr int ws_cta_regs(const WsTile& t) { return kWsProducerRegs * 128 + t.consumer_regs * 128 * t.consumers; }

static_assert(ws_cta_regs(kWsTiles[0]) <= 65536 && ws_cta_regs(kWsTiles[1]) <= 65536 && ws_cta_regs(kWsTiles[2]) <= 65536,
              "a CTA's registers exceed the SM's 64K");

/// The row of head dim d; block_n == 0 when the warp-specialized forward is not built for d.
constexpr WsTile ws_tile(int d) {
  for (const WsTile& t : kWsTiles)
    if (t.d == d) return t;
  return {};
}

}  // namespace flatattn::cuda
