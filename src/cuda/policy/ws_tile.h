// The tiles of the warp-specialized sm90 forward (src/cuda/sm90/ws_fwd_kernel.cuh), one row per head dim it is
// built for: the query rows per CTA (one consumer warpgroup per 64 rows), the key block and the depth of the K/V ring.
// Host-visible (the launcher sizes its tensor maps' boxes from it, dispatch asks which D have the kernel); the
// kernel's WsShape<D> reads its row. A head dim without a row has no warp-specialized kernel.
//   D = 64:  FlashAttention-3's D <= 64 tile (hopper/tile_size.h): 192 query rows (three consumer warpgroups at 160
//            registers: 24 x 128 + 160 x 384 = 64512), 128-key blocks, 3 slots: Q 24 KB + 3 x (K + V) 2 x 16 KB =
//            120 KB; the planner's schedule 1 (ping-pong pairs two consumers). H100, same run as cuDNN: 1.05-1.15x
//            cuDNN at N >= 4k non-causal and N >= 8k causal, 519 TFLOP/s at 16k (bench/results/
//            ws-defaults-h100-stop29.md); the 128-row, two-consumer row it replaced was 0.78-0.94x.
//   D = 128: 128-key blocks, 2 slots: Q 32 KB + 2 x 2 x 32 KB = 160 KB.
//   D = 256: FlashAttention-3's 128 x 80 (Shah et al. 2024; hopper/tile_size.h): 2 slots, Q 64 KB + 2 x 2 x 40 KB =
//            224 KB (of 227); a consumer thread holds O (128 registers), S (40) and P; 168 registers, no spills (the
//            m64n80k16 wgmma of tools/gen_wgmma.py). H100: 0.90-1.16x cuDNN at N = 1k-16k, 748-755 TFLOP/s non-causal
//            at 4k/8k, against 0.89-1.13x for the 64-key row on another lease (ws-defaults-h100-stop29.md: no same-lease
//            A/B). An 80-key block is not whole 64-key Philox groups, so dropout at D = 256 is not this kernel's
//            (ws_route.h; it never was: no D = 256 dropout instance is generated).
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
    {.d = 64, .block_m = 192, .block_n = 128, .stages = 3, .consumers = 3, .consumer_regs = 160},
    {.d = 128, .block_m = 128, .block_n = 128, .stages = 2, .consumers = 2, .consumer_regs = 240},
    {.d = 256, .block_m = 128, .block_n = 80, .stages = 2, .consumers = 2, .consumer_regs = 240},
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
