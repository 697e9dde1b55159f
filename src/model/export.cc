#include "src/model/export.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "flatattn/error.h"

namespace flatattn::model {

namespace {

std::string num(double x) {
  if (!std::isfinite(x)) return std::isnan(x) ? "" : "inf";
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", x);
  return b;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

nlohmann::json json_num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

std::string scope_name(Scope s) { return s == Scope::attention ? "attention" : "layer"; }

}  // namespace

std::string to_csv(const SweepResult& r) {
  std::string out =
      "hardware,workload,scope,mapspace,n,dataflow,feasible,mapping,flops,offchip_bytes,onchip_bytes,buffer_bytes,"
      "spilled_bytes,compute_s,sfu_s,memory_s,onchip_s,attention_s,fc_s,runtime_s,ideal_s,utilization,energy_j,"
      "speedup_vs_flex,speedup_vs_naive\n";
  for (const SweepRow& row : r.rows) {
    const Cost& c = row.cost;
    const std::string fields[] = {
        csv_field(r.hardware.name), csv_field(r.workload.name), scope_name(r.options.scope),
        std::string(r.options.space.name()), std::to_string(row.n), std::string(name(row.dataflow)),
        c.feasible ? "1" : "0", csv_field(c.feasible ? row.mapping : c.infeasible_reason), num(c.flops),
        num(c.offchip_bytes), num(c.onchip_bytes), num(c.buffer_bytes), num(c.spilled_bytes), num(c.compute_s),
        num(c.sfu_s), num(c.memory_s), num(c.onchip_s), num(c.runtime_s), num(row.fc_s), num(row.total_s()),
        num(c.ideal_s), num(c.feasible ? c.utilization : NAN),
        num(c.energy_j), num(r.speedup(row.n, row.dataflow, DataflowKind::flex)),
        num(r.speedup(row.n, row.dataflow, DataflowKind::naive))};
    std::string line;
    for (const std::string& f : fields) line += (line.empty() ? "" : ",") + f;
    out += line + "\n";
  }
  return out;
}

std::string to_json(const SweepResult& r) {
  nlohmann::json j;
  j["hardware"] = {{"name", r.hardware.name}, {"description", r.hardware.description}, {"file", r.hardware.file},
                   {"kind", r.hardware.kind == Hardware::Kind::gpu ? "gpu" : "accelerator"}};
  if (r.hardware.kind == Hardware::Kind::accelerator) j["hardware"]["buffer_bytes"] = r.hardware.accel.buffer_bytes;
  j["workload"] = {{"name", r.workload.name}, {"batch", r.workload.batch}, {"heads", r.workload.heads},
                   {"kv_heads", r.workload.kv_heads}, {"head_dim", r.workload.head_dim},
                   {"dtype", std::string(name(r.workload.dtype))}, {"causal", r.workload.causal}};
  nlohmann::json dfs = nlohmann::json::array();
  for (DataflowKind d : r.options.dataflows) dfs.push_back(std::string(name(d)));
  j["options"] = {{"n", r.options.ns}, {"dataflows", dfs}, {"scope", scope_name(r.options.scope)},
                  {"mapspace", std::string(r.options.space.name())}};
  nlohmann::json rows = nlohmann::json::array();
  for (const SweepRow& row : r.rows) {
    const Cost& c = row.cost;
    rows.push_back({{"n", row.n},
                    {"dataflow", std::string(name(row.dataflow))},
                    {"feasible", c.feasible},
                    {"mapping", c.feasible ? row.mapping : c.infeasible_reason},
                    {"mappings_costed", row.mappings_costed},
                    {"flops", json_num(c.flops)},
                    {"offchip_bytes", json_num(c.offchip_bytes)},
                    {"onchip_bytes", json_num(c.onchip_bytes)},
                    {"buffer_bytes", json_num(c.buffer_bytes)},
                    {"spilled_bytes", json_num(c.spilled_bytes)},
                    {"compute_s", json_num(c.compute_s)},
                    {"sfu_s", json_num(c.sfu_s)},
                    {"memory_s", json_num(c.memory_s)},
                    {"onchip_s", json_num(c.onchip_s)},
                    {"attention_s", json_num(c.runtime_s)},
                    {"fc_s", json_num(row.fc_s)},
                    {"runtime_s", json_num(row.total_s())},
                    {"ideal_s", json_num(c.ideal_s)},
                    {"utilization", json_num(c.utilization)},
                    {"energy_j", json_num(c.energy_j)},
                    {"speedup_vs_flex", json_num(r.speedup(row.n, row.dataflow, DataflowKind::flex))},
                    {"speedup_vs_naive", json_num(r.speedup(row.n, row.dataflow, DataflowKind::naive))}});
  }
  j["rows"] = rows;
  nlohmann::json g;
  for (DataflowKind d : r.options.dataflows) {
    g[std::string(name(d)) + "_over_flex"] = json_num(r.geomean_speedup(d, DataflowKind::flex));
    g[std::string(name(d)) + "_over_naive"] = json_num(r.geomean_speedup(d, DataflowKind::naive));
  }
  j["geomean"] = g;
  return j.dump(2) + "\n";
}

void write_text_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out)
    throw Error(Error::Kind::runtime, "output file", path.string(), "cannot be opened for writing",
                "check that its directory exists and is writable");
  out << text;
  if (!out.flush())
    throw Error(Error::Kind::runtime, "output file", path.string(), "write failed", "check the disk space");
}

}  // namespace flatattn::model
