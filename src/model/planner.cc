#include "src/model/planner.h"

#include <algorithm>

#include "flatattn/error.h"
#include "src/model/data_dir.h"
#include "src/model/json_reader.h"

namespace flatattn::model {

Plan plan(const Gpu& gpu, const AttnShape& shape, std::span<const KernelVariant> variants, Dataflow only) {
  shape.validate();
  if (variants.empty())
    throw Error(Error::Kind::invalid_argument, "variants", "empty", "the planner needs at least one kernel variant",
                "pass the built variants (or load_kernel_variants(\"default\"))");
  Plan p;
  for (const KernelVariant& v : variants) {
    if (only != Dataflow::automatic && v.dataflow != only) continue;
    if (v.head_dim != 0 && v.head_dim != shape.d) continue;  // instantiated for another head dim
    p.candidates.push_back(predict(gpu, shape, v));
  }
  std::stable_sort(p.candidates.begin(), p.candidates.end(), [](const KernelPrediction& a, const KernelPrediction& b) {
    if (a.feasible != b.feasible) return a.feasible;
    return a.time_s < b.time_s;
  });
  if (p.candidates.empty() || !p.candidates.front().feasible) {
    std::string why;
    for (const KernelPrediction& c : p.candidates) why += (why.empty() ? "" : "; ") + c.variant.name + ": " + c.reason;
    throw Error(Error::Kind::unsupported, "attention shape",
                "B=" + std::to_string(shape.batch) + " Nq=" + std::to_string(shape.nq) + " Nk=" + std::to_string(shape.nk) +
                    " Hq=" + std::to_string(shape.hq) + " D=" + std::to_string(shape.d),
                "no " + std::string(only == Dataflow::automatic ? "" : std::string(name(only)) + " ") +
                    "kernel variant can run it (" + (why.empty() ? "none built for this dataflow and D" : why) + ")",
                "build a variant that fits (smaller tiles; flash for long Nk)");
  }
  p.chosen = p.candidates.front();
  return p;
}

std::vector<KernelVariant> load_kernel_variants(std::string_view name_or_path) {
  std::string file;
  const detail::Json j = detail::load_layered("kernels", name_or_path, file);
  const detail::Reader r(j, file);
  r.only({"name", "description", "source", "variants"});
  if (!j.contains("variants") || !j["variants"].is_array() || j["variants"].empty())
    detail::bad_value(file, "variants", j.contains("variants") ? j["variants"].dump().substr(0, 40) : "(missing)",
                      "a non-empty list of variant objects");
  std::vector<KernelVariant> out;
  for (std::size_t i = 0; i < j["variants"].size(); ++i) {
    const detail::Json& e = j["variants"][i];
    const std::string key = "variants[" + std::to_string(i) + "]";
    if (!e.is_object()) detail::bad_value(file, key, e.dump().substr(0, 40), "an object");
    const detail::Reader v(e, file, key);
    v.only({"name", "dataflow", "block_m", "block_n", "warps", "stages", "path", "head_dims", "cap_n", "producer_warps", "cta_regs", "persistent"});
    KernelVariant k;
    k.name = v.string("name");
    const std::string df = v.string("dataflow");
    if (df == "flash") k.dataflow = Dataflow::flash;
    else if (df == "flat") k.dataflow = Dataflow::flat;
    else detail::bad_value(file, v.key("dataflow"), "\"" + df + "\"", "\"flash\" or \"flat\"");
    k.block_m = int(v.integer("block_m", 1, 4096));
    k.block_n = int(v.integer("block_n", 1, 4096));
    k.warps = int(v.integer("warps", 1, 32));
    k.stages = int(v.integer("stages", 1, 16, false, 2));
    k.path = v.string("path", false, "");
    k.cap_n = int(v.integer("cap_n", 0, 1 << 20, false, 0));
    k.producer_warps = int(v.integer("producer_warps", 0, 31, false, 0));
    k.cta_regs = int(v.integer("cta_regs", 0, 1 << 20, false, 0));
    k.persistent = v.boolean("persistent", false, false);
    if (k.cap_n > 0 && k.dataflow != Dataflow::flat)
      detail::bad_value(file, v.key("cap_n"), std::to_string(k.cap_n), "0 for a flash variant (cap_n is FLAT's row capacity)");
    if (v.has("head_dims")) {
      for (std::int64_t hd : v.integers("head_dims", 1, 1024)) {
        KernelVariant x = k;
        x.head_dim = int(hd);
        x.name = k.name + "_d" + std::to_string(hd);
        out.push_back(x);
      }
    } else {
      out.push_back(k);
    }
  }
  return out;
}

std::vector<std::string> kernel_presets() { return list_presets("kernels"); }

}  // namespace flatattn::model
