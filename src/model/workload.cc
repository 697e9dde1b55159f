#include "src/model/workload.h"

#include "src/model/data_dir.h"
#include "src/model/json_reader.h"

namespace flatattn::model {

Workload load_workload(std::string_view name_or_path) {
  Workload w;
  const detail::Json j = detail::load_layered("workloads", name_or_path, w.file);
  const detail::Reader r(j, w.file);
  r.only({"name", "description", "source", "batch", "d_model", "heads", "kv_heads", "head_dim", "ffn", "dtype",
          "causal", "seq_lens"});
  w.name = r.string("name");
  w.description = r.string("description", false);
  w.source = r.string("source", false);
  w.batch = r.integer("batch", 1, 1 << 20);
  w.heads = r.integer("heads", 1, 1 << 16);
  w.kv_heads = r.integer("kv_heads", 1, 1 << 16, false, w.heads);
  w.head_dim = r.integer("head_dim", 1, 1 << 14);
  w.d_model = r.integer("d_model", 1, 1 << 24, false, w.heads * w.head_dim);
  w.ffn = r.integer("ffn", 0, 1 << 26, false, 4 * w.d_model);
  const std::string dt = r.string("dtype", false, "f16");
  if (dt == "f16") w.dtype = DType::f16;
  else if (dt == "bf16") w.dtype = DType::bf16;
  else if (dt == "f32") w.dtype = DType::f32;
  else detail::bad_value(w.file, "dtype", "\"" + dt + "\"", "\"f16\", \"bf16\" or \"f32\"");
  w.causal = r.boolean("causal", false, false);
  if (w.heads % w.kv_heads != 0)
    detail::bad_value(w.file, "kv_heads", std::to_string(w.kv_heads),
                      "a divisor of heads = " + std::to_string(w.heads) + " (GQA groups are whole)");
  if (r.has("seq_lens")) w.seq_lens = r.integers("seq_lens", 1, std::int64_t(1) << 24);
  return w;
}

std::vector<std::string> workload_presets() { return list_presets("workloads"); }

std::vector<std::string> paper_workloads() { return {"bert", "trxl", "t5", "xlm"}; }

}  // namespace flatattn::model
