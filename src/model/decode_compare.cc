#include "src/model/decode_compare.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>
#include <tuple>

#include "flatattn/error.h"
#include "src/model/compare.h"  // median, spearman
#include "src/model/json_reader.h"

namespace flatattn::model {

namespace {

using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                       std::int64_t, int>;
Key key_of(const DecodeShape& s) { return {s.batch, s.hq, s.hkv, s.q_len, s.context, s.page, s.d, int(s.dtype)}; }

constexpr int kParams = 7;
using Params = std::array<double, kParams>;

Params to_params(const DecodeCalib& c) {
  return {c.start_us, c.wave_us, c.tile_us_row_pages, c.tile_us_tile_pages, c.stream_gbps, c.combine_us,
          c.combine_split_us};
}

DecodeCalib from_params(const Params& p) {
  return {p[0], p[1], p[2], p[3], p[4], p[5], p[6]};
}

double mean_log_error(const Gpu& base, const Params& p, const std::vector<DecodeMeasured>& rows) {
  Gpu g = base;
  g.decode = from_params(p);
  double sum = 0;
  for (const DecodeMeasured& m : rows) sum += std::abs(std::log(predict_decode(m.shape, m.splits, g).step_us * 1e-3 / m.ms));
  return sum / double(rows.size());
}

}  // namespace

std::vector<DecodeMeasured> load_decode_measured(const std::filesystem::path& file) {
  const std::string f = file.string();
  const detail::Json top = detail::read_json_file(file);
  if (!top.contains("rows") || !top["rows"].is_array()) detail::bad_value(f, "rows", "(missing)", "a list of bench_decode rows");
  const detail::Reader head(top, f);
  const std::int64_t d = head.integer("d", 1, 1 << 14, false, 128);
  const std::string dt = head.string("dtype", false, "bf16");
  DType dtype = DType::bf16;
  if (dt == "f16") dtype = DType::f16;
  else if (dt != "bf16") detail::bad_value(f, "dtype", "\"" + dt + "\"", "\"bf16\" or \"f16\"");
  std::vector<DecodeMeasured> out;
  const detail::Json& rows = top["rows"];
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string key = "rows[" + std::to_string(i) + "]";
    if (!rows[i].is_object()) detail::bad_value(f, key, rows[i].dump().substr(0, 40), "an object");
    const detail::Reader r(rows[i], f, key);
    if (!r.has("ms") || !r.has("mode")) continue;  // the append rows
    DecodeMeasured m;
    m.mode = r.string("mode");
    if (m.mode != "forced" && m.mode != "planner" && m.mode != "planner_last") continue;
    m.shape.batch = r.integer("batch", 1, 1 << 24);
    m.shape.context = r.integer("ctx", 1, std::int64_t(1) << 40);
    m.shape.hq = r.integer("hq", 1, 1 << 16);
    m.shape.hkv = r.integer("hkv", 1, 1 << 16);
    m.shape.q_len = r.integer("qlen", 1, 1 << 20);
    m.shape.page = r.integer("page", 0, std::int64_t(1) << 30);
    m.shape.d = d;
    m.shape.dtype = dtype;
    m.splits = int(r.integer("splits", 1, 1 << 20));
    m.rule_splits = int(r.integer("planner_splits", 1, 1 << 20));
    m.ms = r.number("ms", 1e-9, 1e12);
    try {
      m.shape.validate();
    } catch (const Error& e) {
      detail::bad_value(f, key, e.what(), "a valid decode shape");
    }
    out.push_back(m);
  }
  if (out.empty()) detail::bad_value(f, "rows", "(no split-KV rows)", "rows of mode forced, planner or planner_last");
  return out;
}

DecodeComparison compare_decode(const Gpu& gpu, const std::vector<DecodeMeasured>& rows, double tolerance) {
  DecodeComparison c;
  std::vector<double> errs, pred, meas;
  std::map<Key, std::map<int, std::vector<double>>> by_shape;
  std::map<Key, const DecodeMeasured*> first;
  for (const DecodeMeasured& m : rows) {
    DecodeRow r;
    r.measured = m;
    r.predicted_ms = predict_decode(m.shape, m.splits, gpu).step_us * 1e-3;
    r.rel_error = std::abs(r.predicted_ms - m.ms) / m.ms;
    errs.push_back(r.rel_error);
    pred.push_back(r.predicted_ms);
    meas.push_back(m.ms);
    c.rows.push_back(r);
    by_shape[key_of(m.shape)][m.splits].push_back(m.ms);
    first.emplace(key_of(m.shape), &m);
  }
  c.median_rel_error = median(errs);
  c.max_rel_error = errs.empty() ? NAN : *std::max_element(errs.begin(), errs.end());
  c.spearman = rows.size() >= 2 ? spearman(pred, meas) : NAN;
  for (const auto& [key, counts] : by_shape) {
    if (counts.size() < 2) continue;
    const DecodeMeasured& m = *first.at(key);
    DecodePick p;
    p.shape = m.shape;
    p.rule = m.rule_splits;
    double best_ms = INFINITY, model_us = INFINITY;
    for (const auto& [k, times] : counts) {
      const double ms = median(times);
      p.splits.push_back(k);
      p.ms.push_back(ms);
      if (ms < best_ms) best_ms = ms, p.best = k;
      const double us = predict_decode(m.shape, k, gpu).step_us;
      if (us < model_us) model_us = us, p.model = k;
    }
    auto ms_of = [&](int k) {
      const auto it = std::find(p.splits.begin(), p.splits.end(), k);
      return it == p.splits.end() ? NAN : p.ms[std::size_t(it - p.splits.begin())];
    };
    p.model_free = model_decode_splits(m.shape, gpu);
    p.model_loss = ms_of(p.model) / best_ms - 1;
    p.rule_loss = ms_of(p.rule) / best_ms - 1;
    c.model_ok += p.model_loss <= tolerance;
    if (std::isfinite(p.rule_loss)) {
      ++c.rule_measured;
      c.rule_ok += p.rule_loss <= tolerance;
    }
    c.picks.push_back(p);
  }
  return c;
}

DecodeCalib fit_decode(const Gpu& gpu, const std::vector<DecodeMeasured>& rows) {
  if (rows.empty())
    throw Error(Error::Kind::invalid_argument, "measured rows", "0", "the fit needs at least one row", "give a file with rows");
  // Start: the file's constants, or a guess from the hardware (a tile of 32 KiB at ~16 GB/s per CTA, HBM at 90 %).
  Params x0 = gpu.decode ? to_params(*gpu.decode)
                             : Params{8, 3, 2, 1.3, gpu.hbm_bw * 0.9e-9, 4, 0.1};
  for (double& v : x0) v = std::log(std::max(v, 1e-3));
  auto f = [&](const Params& lx) {
    Params p;
    for (int i = 0; i < kParams; ++i) p[i] = std::exp(lx[i]);
    return mean_log_error(gpu, p, rows);
  };
  // Nelder-Mead (reflection 1, expansion 2, contraction 1/2, shrink 1/2), restarted from its best point.
  Params best = x0;
  double best_f = f(x0);
  for (int restart = 0; restart < 4; ++restart) {
    std::array<Params, kParams + 1> s;
    std::array<double, kParams + 1> v;
    for (int i = 0; i <= kParams; ++i) {
      s[i] = best;
      if (i > 0) s[i][i - 1] += 0.2;
      v[i] = f(s[i]);
    }
    for (int it = 0; it < 3000; ++it) {
      std::array<int, kParams + 1> o;
      std::iota(o.begin(), o.end(), 0);
      std::sort(o.begin(), o.end(), [&](int a, int b) { return v[a] < v[b]; });
      const int hi = o[kParams], lo = o[0], second = o[kParams - 1];
      Params c{};
      for (int i = 0; i <= kParams; ++i)
        if (i != hi)
          for (int j = 0; j < kParams; ++j) c[j] += s[i][j] / kParams;
      auto along = [&](double t) {
        Params y;
        for (int j = 0; j < kParams; ++j) y[j] = c[j] + t * (s[hi][j] - c[j]);
        return y;
      };
      const Params r = along(-1);
      const double fr = f(r);
      if (fr < v[lo]) {
        const Params e = along(-2);
        const double fe = f(e);
        if (fe < fr) s[hi] = e, v[hi] = fe;
        else s[hi] = r, v[hi] = fr;
      } else if (fr < v[second]) {
        s[hi] = r, v[hi] = fr;
      } else {
        const Params k = along(0.5);
        const double fk = f(k);
        if (fk < v[hi]) {
          s[hi] = k, v[hi] = fk;
        } else {
          for (int i = 0; i <= kParams; ++i)
            if (i != lo) {
              for (int j = 0; j < kParams; ++j) s[i][j] = s[lo][j] + 0.5 * (s[i][j] - s[lo][j]);
              v[i] = f(s[i]);
            }
        }
      }
    }
    const int lo = int(std::min_element(v.begin(), v.end()) - v.begin());
    if (v[lo] < best_f) best = s[lo], best_f = v[lo];
  }
  Params p;
  for (int i = 0; i < kParams; ++i) p[i] = std::exp(best[i]);
  return from_params(p);
}

}  // namespace flatattn::model
