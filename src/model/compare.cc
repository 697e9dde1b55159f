#include "src/model/compare.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "flatattn/error.h"
#include "src/model/json_reader.h"

namespace flatattn::model {

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

namespace {

std::vector<double> ranks(const std::vector<double>& x) {
  std::vector<std::size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  std::vector<double> r(x.size());
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j + 1 < idx.size() && x[idx[j + 1]] == x[idx[i]]) ++j;
    const double avg = 0.5 * double(i + j) + 1.0;
    for (std::size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

using ShapeKey = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, int>;
ShapeKey key_of(const AttnShape& s) { return {s.batch, s.nq, s.nk, s.hq, s.hkv, s.d, s.causal, int(s.dtype)}; }

double median_log_error(const Gpu& gpu, const std::vector<Measured>& m) {
  std::vector<double> e;
  for (const Measured& x : m) {
    const KernelPrediction p = predict(gpu, x.shape, x.variant);
    if (p.feasible) e.push_back(std::abs(std::log(p.time_s * 1e3 / x.ms)));
  }
  return e.empty() ? INFINITY : median(e);
}

}  // namespace

std::vector<Measured> load_measured(const std::filesystem::path& file) {
  const detail::Json top = [&] {
    // read_json_file requires an object at the top; accept a bare list too.
    std::ifstream probe(file);
    detail::Json j;
    try {
      if (!probe) throw Error(Error::Kind::invalid_argument, "measured file", file.string(), "cannot be opened", "check the path");
      j = detail::Json::parse(probe);
    } catch (const detail::Json::parse_error& e) {
      throw Error(Error::Kind::invalid_argument, "measured file " + file.string(), "byte " + std::to_string(e.byte),
                  std::string("is not valid JSON: ") + e.what(), "fix the JSON syntax");
    }
    return j;
  }();
  const std::string f = file.string();
  const detail::Json* list = &top;
  if (top.is_object()) {
    if (!top.contains("results")) detail::bad_value(f, "results", "(missing)", "a list of measured records");
    list = &top["results"];
  }
  if (!list->is_array() || list->empty()) detail::bad_value(f, "(records)", list->dump().substr(0, 40), "a non-empty list of records");
  std::vector<Measured> out;
  for (std::size_t i = 0; i < list->size(); ++i) {
    const detail::Json& e = (*list)[i];
    std::string key(1, '[');
    key.append(std::to_string(i)).push_back(']');
    if (!e.is_object()) detail::bad_value(f, key, e.dump().substr(0, 40), "an object");
    const detail::Reader r(e, f, key);
    r.only({"kernel", "dataflow", "block_m", "block_n", "warps", "stages", "path", "cap_n", "producer_warps", "cta_regs", "persistent", "B", "N", "Nk", "Hq", "Hkv",
            "D", "causal", "dtype", "ms"});
    Measured m;
    m.variant.name = r.string("kernel");
    const std::string df = r.string("dataflow");
    if (df == "flash") m.variant.dataflow = Dataflow::flash;
    else if (df == "flat") m.variant.dataflow = Dataflow::flat;
    else detail::bad_value(f, r.key("dataflow"), "\"" + df + "\"", "\"flash\" or \"flat\"");
    m.variant.block_m = int(r.integer("block_m", 1, 4096));
    m.variant.block_n = int(r.integer("block_n", 1, 4096));
    m.variant.warps = int(r.integer("warps", 1, 32, false, 4));
    m.variant.stages = int(r.integer("stages", 1, 16, false, 2));
    m.variant.path = r.string("path", false, "");
    m.variant.cap_n = int(r.integer("cap_n", 0, 1 << 20, false, 0));
    m.variant.producer_warps = int(r.integer("producer_warps", 0, 31, false, 0));
    m.variant.cta_regs = int(r.integer("cta_regs", 0, 1 << 20, false, 0));
    m.variant.persistent = r.boolean("persistent", false, false);
    m.shape.batch = r.integer("B", 1, 1 << 24);
    m.shape.nq = r.integer("N", 1, 1 << 26);
    m.shape.nk = r.integer("Nk", 1, 1 << 26, false, m.shape.nq);
    m.shape.hq = r.integer("Hq", 1, 1 << 16);
    m.shape.hkv = r.integer("Hkv", 1, 1 << 16, false, m.shape.hq);
    m.shape.d = r.integer("D", 1, 1 << 14);
    m.shape.causal = r.boolean("causal", false, false);
    const std::string dt = r.string("dtype", false, "bf16");
    if (dt == "bf16") m.shape.dtype = DType::bf16;
    else if (dt == "f16") m.shape.dtype = DType::f16;
    else detail::bad_value(f, r.key("dtype"), "\"" + dt + "\"", "\"bf16\" or \"f16\"");
    m.ms = r.number("ms", 1e-9, 1e12);
    if (m.shape.hq % m.shape.hkv != 0) detail::bad_value(f, r.key("Hkv"), std::to_string(m.shape.hkv), "a divisor of Hq");
    out.push_back(m);
  }
  return out;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2)
    throw Error(Error::Kind::invalid_argument, "spearman", std::to_string(a.size()) + " vs " + std::to_string(b.size()),
                "needs two equally long lists of at least 2 values", "pass matching lists");
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double n = double(a.size()), mean = (n + 1) / 2;
  double cov = 0, va = 0, vb = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    cov += (ra[i] - mean) * (rb[i] - mean);
    va += (ra[i] - mean) * (ra[i] - mean);
    vb += (rb[i] - mean) * (rb[i] - mean);
  }
  return va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : 0;
}

Comparison compare(const Gpu& gpu, const std::vector<Measured>& measured) {
  Comparison c;
  std::vector<double> pred, meas, err;
  std::map<ShapeKey, std::vector<std::size_t>> shapes;
  for (const Measured& m : measured) {
    ComparedRow row;
    row.measured = m;
    const KernelPrediction p = predict(gpu, m.shape, m.variant);
    if (!p.feasible) {
      row.predicted_ms = NAN;
      row.rel_error = NAN;
      ++c.infeasible;
    } else {
      row.predicted_ms = p.time_s * 1e3;
      row.rel_error = std::abs(row.predicted_ms - m.ms) / m.ms;
      pred.push_back(row.predicted_ms);
      meas.push_back(m.ms);
      err.push_back(row.rel_error);
      shapes[key_of(m.shape)].push_back(c.rows.size());
    }
    c.rows.push_back(row);
  }
  c.spearman = pred.size() >= 2 ? spearman(pred, meas) : NAN;
  c.median_rel_error = median(err);
  for (const auto& [key, idx] : shapes) {
    std::size_t best_pred = idx[0], best_meas = idx[0];
    for (std::size_t i : idx) {
      if (c.rows[i].predicted_ms < c.rows[best_pred].predicted_ms) best_pred = i;
      if (c.rows[i].measured.ms < c.rows[best_meas].measured.ms) best_meas = i;
    }
    ++c.shapes;
    if (c.rows[best_pred].measured.ms == c.rows[best_meas].measured.ms) ++c.picks_fastest;
    if (c.rows[best_pred].measured.ms <= 1.05 * c.rows[best_meas].measured.ms) ++c.picks_within_5pct;
  }
  return c;
}

Gpu calibrate(const Gpu& gpu_in, const std::vector<Measured>& measured, const std::string& base_name, std::string& report) {
  Gpu g = gpu_in;
  std::set<std::string> paths;
  for (const Measured& m : measured) paths.insert(m.variant.path.empty() ? g.default_path : m.variant.path);
  // Coordinate search: each constant over a multiplicative grid, a few rounds.
  double best = median_log_error(g, measured);
  for (int round = 0; round < 4; ++round) {
    for (const std::string& p : paths) {
      GpuPath& cal = g.paths.at(p);
      for (double* x : {&cal.mma_efficiency, &cal.overlap, &cal.flat_overlap, &cal.cta_overhead_cycles}) {
        const double x0 = *x;
        double bx = x0;
        for (double f : {0.6, 0.75, 0.85, 0.93, 1.07, 1.15, 1.3, 1.6, 0.0}) {
          double v = f == 0.0 ? (x0 > 0 ? 0.0 : 0.1) : x0 * f;  // 0 probes the bound (and leaves it)
          if (x != &cal.cta_overhead_cycles) v = std::clamp(v, 0.01, 1.0);
          *x = v;
          const double e = median_log_error(g, measured);
          if (e < best) {
            best = e;
            bx = v;
          }
        }
        *x = bx;
      }
    }
    const double l0 = g.launch_s;
    double bl = l0;
    for (double f : {0.5, 0.75, 1.25, 1.5, 2.0}) {
      g.launch_s = l0 * f;
      const double e = median_log_error(g, measured);
      if (e < best) {
        best = e;
        bl = g.launch_s;
      }
    }
    g.launch_s = bl;
  }
  nlohmann::json j;
  j["base"] = base_name;
  j["name"] = base_name + "-calibrated";
  j["description"] = "calibration fitted by `flatattn model measured --fit` to " + std::to_string(measured.size()) +
                     " measured kernel times (median |log error| " + std::to_string(best) + ")";
  j["launch_us"] = g.launch_s * 1e6;
  for (const std::string& p : paths) {
    const GpuPath& cal = g.paths.at(p);
    j["paths"][p] = {{"mma_efficiency", cal.mma_efficiency}, {"overlap", cal.overlap},
                     {"flat_overlap", cal.flat_overlap}, {"cta_overhead_cycles", cal.cta_overhead_cycles}};
  }
  report = j.dump(2) + "\n";
  return g;
}

PersistentCheck check_persistent(const Gpu& gpu, const std::vector<Measured>& measured, double tolerance) {
  PersistentCheck c;
  for (const Measured& p : measured) {
    const std::string& name = p.variant.name;
    if (!p.variant.persistent || name.size() < 2 || name.compare(name.size() - 2, 2, "_p") != 0) continue;
    for (const Measured& o : measured)
      if (!o.variant.persistent && o.variant.name == name.substr(0, name.size() - 2) &&
          key_of(o.shape) == key_of(p.shape)) {
        PersistentRow r;
        r.one_tile = o;
        r.persistent = p;
        const KernelPrediction a = predict(gpu, o.shape, o.variant), b = predict(gpu, p.shape, p.variant);
        if (!a.feasible || !b.feasible)
          throw Error(Error::Kind::invalid_argument, "measured record", o.variant.name,
                      "the model calls it infeasible: " + a.reason + b.reason, "measure kernels the model describes");
        r.pred_one_tile_ms = a.time_s * 1e3;
        r.pred_persistent_ms = b.time_s * 1e3;
        c.rows.push_back(r);
        break;
      }
  }
  if (c.rows.empty())
    throw Error(Error::Kind::invalid_argument, "measured records", std::to_string(measured.size()),
                "hold no one-tile / persistent pair (same shape, names differing by \"_p\")", "give both kernels' times");
  std::vector<double> err;
  for (const PersistentRow& r : c.rows) {
    const bool pick = r.model_picks_persistent();
    if (pick == (r.persistent.ms < r.one_tile.ms)) ++c.picks_faster;
    if (PersistentRow::loss(pick, r.one_tile.ms, r.persistent.ms) > tolerance) ++c.picks_losing;
    err.push_back(std::abs(std::log(r.predicted_speedup() / r.measured_speedup())));
  }
  c.median_speedup_error = median(err);
  return c;
}

Gpu fit_persistent(const Gpu& gpu_in, const std::vector<Measured>& measured, const std::string& path) {
  Gpu g = gpu_in;
  GpuPath& cal = g.paths.at(path);
  double best = INFINITY, best_sum = INFINITY, best_x = cal.cta_overhead_cycles;
  for (int i = 0; i <= 100; ++i) {
    cal.persistent_tile_cycles = cal.cta_overhead_cycles * i / 100.0;
    const PersistentCheck c = check_persistent(g, measured);
    double sum = 0;
    for (const PersistentRow& r : c.rows) sum += std::abs(std::log(r.predicted_speedup() / r.measured_speedup()));
    if (c.median_speedup_error < best - 1e-12 || (c.median_speedup_error <= best + 1e-12 && sum < best_sum)) {
      best = c.median_speedup_error;
      best_sum = sum;
      best_x = cal.persistent_tile_cycles;
    }
  }
  cal.persistent_tile_cycles = best_x;
  return g;
}

}  // namespace flatattn::model
