// Hardware descriptions of the cost model: spatial accelerators (the FLAT paper's edge and cloud
// platforms) and NVIDIA GPUs. Both are data: JSON files shipped in <data root>/model/hardware/ (see
// data_dir.h) or any file a user writes in the same format (data/model/README.md).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flatattn/dtype.h"

namespace flatattn::model {

/// Energy proxy constants in picojoules (relative numbers; FLAT's own code charges DRAM only,
/// 32 pJ per byte: FuseMax flat_validation.csv).
struct EnergyCosts {
  double offchip_byte = 32.0;
  double onchip_byte = 1.0;
  double mac = 0.5;
  double sfu_op = 0.5;
};

/// A spatial accelerator as in FLAT (Kao et al., ASPLOS'23) Table 2: a pe_rows x pe_cols systolic PE
/// array, one on-chip global buffer, an off-chip memory, and a 1-D special-function unit (softmax).
struct Accelerator {
  int pe_rows = 0, pe_cols = 0;     ///< PE array shape
  double freq_hz = 0;               ///< clock (Hz)
  double buffer_bytes = 0;          ///< on-chip global buffer capacity (bytes)
  double onchip_bw = 0;             ///< buffer <-> PE array bandwidth (bytes/s)
  double offchip_bw = 0;            ///< off-chip memory bandwidth (bytes/s, reads + writes)
  double sfu_ops_per_cycle = 0;     ///< 1-D special-function unit throughput (ops/cycle)
  double softmax_ops_per_element = 4;  ///< SFU ops per logit: max, exp, sum, scale
  EnergyCosts energy{};

  [[nodiscard]] double pes() const { return double(pe_rows) * pe_cols; }
  /// Peak MAC/s of the PE array.
  [[nodiscard]] double macs_per_s() const { return pes() * freq_hz; }
};

/// Calibration of one family of our CUDA kernels ("sm80": mma.sync + cp.async, "sm90": wgmma + TMA)
/// on one GPU. Every constant is annotated in the data file it comes from.
struct GpuPath {
  double mma_efficiency = 0.6;      ///< reachable fraction of tensor_flops in the attention main loop
  double overlap = 0.5;             ///< 0: MMA and softmax serialize; 1: they overlap perfectly
  double flat_overlap = 0.25;       ///< the same for FLAT kernels, whose softmax is a separate phase
                                    ///< between the Q K^T and P V phases (only other CTAs hide it)
  double alu_ops_per_score = 6;     ///< fp32 ops per logit (scale, max, subtract, sum, convert)
  double mask_ops_per_score = 3;    ///< extra fp32 ops per logit of a partially masked block
  double rescale_ops_per_row = 2;   ///< flash: extra fp32 ops per row per key block (m, l update)
  double warps_to_saturate = 8;     ///< resident warps per SM needed to reach the full rate
  double cta_overhead_cycles = 2000;  ///< per-CTA prologue/epilogue latency (Q load, O store)
  /// A persistent kernel (KernelVariant::persistent): the cycles one tile after a CTA's first still costs beyond its
  /// main loop, the part of its Q load, pipeline fill and epilogue that its neighbour tiles' work does not hide (the
  /// first tile's fill and the last one's epilogue cost cta_overhead_cycles, as a one-tile CTA's). < 0: the same as
  /// cta_overhead_cycles (nothing hidden; the path has no persistent kernel measured).
  double persistent_tile_cycles = -1;
  int max_regs_per_thread = 255;    ///< register budget of one thread
  int reg_overhead = 40;            ///< registers a thread needs beyond fragments and accumulators
  int smem_reader_warps = 1;        ///< warps sharing one shared-memory read of an operand (mma.sync: 1,
                                    ///< wgmma: 4, a warpgroup reads its B operand once)
};

/// Calibration of our CUDA decode step (src/cuda/decode, docs/decode.md) on one GPU: the constants of
/// src/model/decode.h's step-time model, fitted to bench_decode times ("decode" in the hardware file; the file's
/// notes name the data). Times in microseconds, the rate in GB/s (10^9 B/s). Fitted at D = 128 (a tile of 64 keys =
/// 32 KiB of K and V); decode.h scales the tile times by D / 128.
struct DecodeCalib {
  double start_us = 0;         ///< once per step: the decode kernel's launch and the tail of its last CTAs
  double wave_us = 0;          ///< per wave of resident CTAs: a CTA's dependent start reads (scalars, table, Q)
  double tile_us_row_pages = 0;   ///< one CTA's time per 64-key tile when every row looks up its page (page % 64 != 0)
  double tile_us_tile_pages = 0;  ///< ... with one page lookup per tile (page % 64 == 0, or a contiguous cache)
  double stream_gbps = 0;      ///< KV read rate of the whole GPU when enough CTAs are in flight
  double combine_us = 0;       ///< the split-KV combine kernel's fixed time (launch, one pass)
  double combine_split_us = 0; ///< the combine's time per split (each of its rows reads every split's partial)
};

/// An NVIDIA GPU from published (or measured) rates.
struct Gpu {
  int sms = 0;
  double clock_hz = 0;                    ///< the clock the tensor rate is quoted at
  std::map<DType, double> tensor_flops;   ///< dense tensor-core FLOP/s by input dtype (0: unsupported)
  double hbm_bw = 0;                      ///< DRAM bandwidth (bytes/s, reads + writes)
  double l2_bytes = 0;
  double l2_bw = 0;                       ///< L2 -> SM bandwidth (bytes/s)
  int smem_per_sm = 0;                    ///< shared memory per SM (bytes)
  int smem_per_cta = 0;                   ///< opt-in shared memory per CTA (bytes)
  int regs_per_sm = 65536;
  int max_warps_per_sm = 64;
  int max_ctas_per_sm = 32;
  double mufu_per_clk_per_sm = 16;        ///< exp2 per clock per SM
  double fp32_per_clk_per_sm = 128;       ///< fp32 ops per clock per SM
  double smem_bytes_per_clk_per_sm = 128; ///< shared-memory bandwidth per SM
  double launch_s = 4e-6;                 ///< launch overhead of one kernel (s)
  double gemm_efficiency = 0.8;           ///< unfused dataflows: library GEMM fraction of tensor_flops
  double stream_efficiency = 0.9;         ///< unfused dataflows: elementwise kernels' fraction of hbm_bw
  std::map<std::string, GpuPath> paths;   ///< calibration per kernel family ("sm80", "sm90")
  std::string default_path = "sm80";      ///< the family a variant without a path uses
  std::optional<DecodeCalib> decode;      ///< the decode step's constants (src/model/decode.h), when the file has them

  /// Tensor FLOP/s for dtype; throws Error when this GPU has no tensor rate for it.
  [[nodiscard]] double tensor_rate(DType dtype) const;
  /// Calibration of a kernel family (empty name: default_path); throws Error listing the known ones.
  [[nodiscard]] const GpuPath& path(std::string_view name) const;
};

/// One hardware description.
struct Hardware {
  enum class Kind { accelerator, gpu };
  std::string name;         ///< preset name or file stem
  std::string description;
  std::string source;       ///< where the numbers come from
  std::string file;         ///< the file it was read from
  Kind kind = Kind::accelerator;
  Accelerator accel{};      ///< kind == accelerator
  Gpu gpu{};                ///< kind == gpu
};

/// Loads a hardware description: a preset name (a file <data root>/model/hardware/<name>.json) or a
/// path to a JSON file. A file may name a "base" (preset or path) whose keys it overrides, which is how
/// measured ceilings override published rates (e.g. h100-measured.json over h100.json).
/// Throws flatattn::Error naming the file, the key, the expected type/range, on any bad input.
Hardware load_hardware(std::string_view name_or_path);

/// Names of the shipped hardware presets, sorted.
std::vector<std::string> hardware_presets();

/// The GPU preset for a CUDA device: by compute capability (9.0: h100, or h200 when the device name
/// says H200; 8.x: a100; 7.5: t4), with the device's own SM count and opt-in shared memory when given
/// (> 0). Other 8.x parts (RTX 30/40) get the A100's per-SM rates: give them their own file for
/// absolute times. Throws Error for a compute capability with no preset.
Hardware gpu_preset_for(int cc_major, int cc_minor, std::string_view device_name, int sms = 0,
                        int smem_per_cta = 0);

}  // namespace flatattn::model
