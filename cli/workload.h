// One attention workload as the CLI describes it: shapes, dtype, features, device and threads, with
// the flags that set it (shared by `run` and `bench`) and their cross-checks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "flatattn/attention.h"

namespace CLI {
class App;
}

namespace flatattn::cli {

/// What a measurement times: forward, backward (given the forward's out and LSE), or both.
enum class Mode { fwd, bwd, fwdbwd };
std::string_view name(Mode m);

struct Workload {
  std::int64_t batch = 1;    ///< B
  std::int64_t nq = 1024;    ///< Nq
  std::int64_t nk = 1024;    ///< Nk
  std::int64_t hq = 12;      ///< Hq
  std::int64_t hkv = 12;     ///< Hkv (GQA when < Hq)
  std::int64_t d = 64;       ///< D
  DType dtype = DType::f32;
  bool causal = true;
  CausalAlign align = CausalAlign::bottom_right;
  Window window{};
  float softcap = 0.f;
  bool alibi = false;  ///< ALiBi with BLOOM's slopes 2^(-8 (h + 1) / Hq)
  bool sinks = false;  ///< attention sinks, N(0, 1) per head (from the seed)
  float dropout = 0.f;       ///< attention dropout p (the mask's seed is `seed`, its offset 0)
  /// Additive bias: empty off, else the dims of (B, Hq, Nq) it has in full ("bhq" dense, "hq", "b", "1" for
  /// (1, 1, 1, Nk), ...), in the workload's dtype, N(0, 1) from the seed; backward modes compute dbias.
  std::string bias;
  std::optional<float> scale;
  Dataflow dataflow = Dataflow::automatic;
  int threads = 0;           ///< CPU threads, 0 = all
  Fp32Matmul fp32_matmul = Fp32Matmul::exact;  ///< Options::fp32_matmul (--fp32-matmul)
  DeviceKind device = DeviceKind::cpu;
  std::uint64_t seed = 0;    ///< of the random inputs (and of the block lists, cli/sparse_workload.h)
  /// Block-sparse attention (--density, cli/sparse_workload.h): share P in (0, 1] of the block_q x block_kv
  /// blocks listed at random; 0 = off.
  double density = 0.0;
  std::int64_t block_q = 128, block_kv = 128;  ///< --block Q,KV (rows, keys per block)
  /// Local + global attention (--global): G global positions spread over each sequence; 0 = off.
  std::int64_t globals = 0;

  [[nodiscard]] bool sparse() const { return density > 0 || globals > 0; }
  [[nodiscard]] Options options() const;
  /// FLOPs of one pass in `mode` (forward_flops; backward counted as 2.5x the forward, docs/design.md, "FLOPs").
  /// Sparse workloads: 4 D per visible (row, key) pair of the visited blocks only (sparse_stats), so that the
  /// GFLOP/s of a sparse run count only the work its mask leaves.
  [[nodiscard]] double flops(Mode mode) const;
  /// Bytes of q, k, v and out (plus dout, dq, dk, dv for backward modes) in the dtype.
  [[nodiscard]] double tensor_bytes(Mode mode) const;
  [[nodiscard]] std::string str() const;  ///< "B=8 Nq=Nk=1024 Hq=12 Hkv=12 D=64 f32 causal"
  [[nodiscard]] std::string features_str() const;  ///< the same without B and N
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Raw flag values as typed (strings where the default depends on other flags).
struct WorkloadFlags {
  std::int64_t batch = 0;  ///< 0: the subcommand's default
  std::int64_t n = 1024, nk = 0;
  std::int64_t hq = 12, hkv = 0;  ///< hkv 0: = hq
  std::int64_t d = 64;
  std::string dtype = "auto";
  bool causal = true;
  std::string align = "bottom-right";
  std::vector<std::int64_t> window;
  float softcap = 0.f;
  bool alibi = false, sinks = false;
  float dropout = 0.f;
  std::string bias;  ///< --bias DIMS
  float scale = 0.f;  ///< 0: 1/sqrt(D)
  std::string dataflow = "auto";
  int threads = 0;
  std::string fp32_matmul = "exact";
  std::string device = "auto";
  std::uint64_t seed = 0;  ///< 0: fresh
  double density = 0;      ///< --density P: 0 off
  std::vector<std::int64_t> block;  ///< --block Q[,KV]
  std::int64_t global = 0;  ///< --global G: 0 off
};

/// Adds the shape and band flags: --batch/-b, --n (with_n), --nk, --hq, --hkv, --d, --causal/--no-causal,
/// --causal-align, --window (`flatattn check` takes these with the sparse flags for a workload of one's own).
void add_shape_flags(CLI::App& app, WorkloadFlags& f, bool with_n = true);

/// Resolves the flags of add_shape_flags into w (B, Nq, Nk, Hq, Hkv, D, causal, alignment, window): throws
/// UsageError for --hkv not dividing --hq and for a RIGHT window side > 0 with --causal.
void resolve_shape(const WorkloadFlags& f, Workload& w);

/// Adds add_shape_flags', and --dtype, --softcap, ... (below) and add_sparse_flags' (cli/sparse_workload.h):
/// --batch/-b, --n, --nk, --hq, --hkv, --d, --dtype, --causal/--no-causal, --causal-align,
/// --window, --softcap, --alibi, --sinks, --dropout, --scale, --dataflow, --threads, --fp32-matmul, --device,
/// --seed, --density, --block, --global to `app`.
/// with_n: false when the subcommand takes its own --n (bench's list).
void add_workload_flags(CLI::App& app, WorkloadFlags& f, bool with_n = true, bool with_dataflow = true);

/// Cross-checks the flags (throws UsageError naming the flag) and resolves defaults: device auto ->
/// cuda when this build has CUDA and a device exists, else cpu; dtype auto -> f32 on cpu, bf16 on cuda.
Workload resolve(const WorkloadFlags& f);

/// Throws UsageError for --device cuda when the build or the machine has no CUDA device.
DeviceKind resolve_device(const std::string& flag_value);

DType parse_dtype(const std::string& s);
Dataflow parse_dataflow(const std::string& s);
Mode parse_mode(const std::string& s);

}  // namespace flatattn::cli
