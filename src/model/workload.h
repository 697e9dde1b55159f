// Workload descriptions of the cost model: a transformer's attention (and, for end-to-end scope, its
// FC layers), as data files in <data root>/model/workloads/ (data/model/README.md gives the format).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "flatattn/dtype.h"

namespace flatattn::model {

/// One transformer layer's shapes. Sequence lengths come from the sweep (or `seq_lens`).
struct Workload {
  std::string name, description, source, file;
  std::int64_t batch = 1;       ///< B
  std::int64_t d_model = 0;     ///< hidden size (= heads * head_dim for the paper's models)
  std::int64_t heads = 0;       ///< Hq
  std::int64_t kv_heads = 0;    ///< Hkv (GQA when < heads)
  std::int64_t head_dim = 0;    ///< d
  std::int64_t ffn = 0;         ///< FFN inner size (FC layers of the end-to-end scope)
  DType dtype = DType::f16;     ///< element type of activations (bytes per element)
  bool causal = false;          ///< decoder self-attention (the accelerator model ignores masks)
  std::vector<std::int64_t> seq_lens;  ///< the default N sweep

  [[nodiscard]] int elem_bytes() const { return int(element_size(dtype)); }
  [[nodiscard]] std::int64_t group() const { return heads / kv_heads; }
};

/// Loads a workload: preset name (<data root>/model/workloads/<name>.json) or a JSON file path; a file
/// may override a "base". Throws flatattn::Error naming the file, key and expected range on bad input
/// (e.g. heads not a multiple of kv_heads).
Workload load_workload(std::string_view name_or_path);

/// Names of the shipped workload presets, sorted.
std::vector<std::string> workload_presets();

/// The paper's models (FLAT, ASPLOS'23, Sec. 7; FuseMax's replica): bert, trxl, t5, xlm.
std::vector<std::string> paper_workloads();

}  // namespace flatattn::model
