#include "cli/report.h"

#include <fmt/format.h>

#include "cli/child.h"

namespace flatattn::cli {

using nlohmann::json;

const char* const kRuleLine =
    "rule: max|out - ref| <= 2*max|naive_lowp - ref| + floor; ref = fp64 oracle, naive_lowp = naive attention in the "
    "input dtype, floor = rounding of the output dtype (docs/design.md); f32 adds 1e-5*max|ref| (docs/design.md: fp32 kernels "
    "match the oracle to ~1e-5 relative)";

std::vector<std::string> result_header(const std::vector<Ceiling>& ceilings) {
  std::vector<std::string> h = {"method", "backend", "dataflow", "tiles", "time ms", "GFLOP/s"};
  for (const Ceiling& c : ceilings) h.push_back(c.column);
  h.insert(h.end(), {"peak mem", "workspace", "check"});
  return h;
}

std::vector<std::string> result_row(const json& r, const std::vector<Ceiling>& ceilings) {
  const std::string method = r.value("label", r.value("method", "?"));
  if (r.contains("error") || r.contains("skipped")) {
    std::vector<std::string> row = {method, "-", "-", "-", "-", "-"};
    row.insert(row.end(), ceilings.size(), "-");
    const bool unsupported = r.contains("error") && r["error"].value("kind", "") == "unsupported";
    row.insert(row.end(), {"-", "-", r.contains("skipped") ? "skipped" : unsupported ? "unsupported" : "error"});
    return row;
  }
  const json& rep = r["report"];
  const int bm = rep.value("block_m", 0), bn = rep.value("block_n", 0);
  std::vector<std::string> row = {method,
                                  rep.value("backend", "?"),
                                  rep.value("dataflow", "?"),
                                  bm > 0 ? fmt::format("{}x{}", bm, bn) : "-",
                                  fmt_ms(r.value("median_ms", 0.0)),
                                  fmt::format("{:.1f}", r.value("gflops", 0.0))};
  for (const Ceiling& c : ceilings) row.push_back(fmt::format("{:.3f}", r.value("gflops", 0.0) / c.gflops));
  row.push_back(r["peak_bytes"].is_number() ? fmt_bytes(r["peak_bytes"].get<double>()) : "-");
  row.push_back(r["workspace_bytes"].is_number() ? fmt_bytes(r["workspace_bytes"].get<double>()) : "-");
  const json& c = r["check"];
  row.push_back(c.is_object() && !c.empty() && !c.contains("not_checked") ? (c.value("pass", false) ? "PASS" : "FAIL")
                                                                           : "not checked");
  return row;
}

std::string check_line(const json& r) {
  if (r.contains("skipped")) return "skipped: " + r["skipped"].get<std::string>();
  if (r.contains("error")) return child_error_line(r);
  const json& c = r["check"];
  if (!c.is_object() || c.empty()) return "not checked (--check-rows 0)";
  if (c.contains("not_checked")) return "not checked: " + c["not_checked"].get<std::string>();
  std::string s = fmt::format("{} {} max_err={:.2e} {} bound={:.2e} (2*naive_lowp={:.2e} + floor={:.2e}) rel={:.2e}",
                              c.value("what", "out"), c.value("pass", false) ? "PASS" : "FAIL", c.value("max_err", 0.0),
                              c.value("max_err", 0.0) <= c.value("bound", 0.0) ? "<=" : ">", c.value("bound", 0.0),
                              2 * c.value("naive_err", 0.0), c.value("floor", 0.0), c.value("rel_err", 0.0));
  if (c.value("sampled_rows", 0) > 0) s += fmt::format(", {} sampled rows", c.value("sampled_rows", 0));
  if (c.value("nonfinite", 0) > 0) s += fmt::format(", {} non-finite", c.value("nonfinite", 0));
  const long long unwritten = c.value("unwritten", -1LL);
  if (unwritten >= 0) s += unwritten == 0 ? ", every output written" : fmt::format(", {} outputs unwritten/non-finite", unwritten);
  return s;
}

bool result_ok(const json& r) {
  if (r.contains("skipped")) return true;
  // A dataflow the engine declines for a shape ("unsupported") is a reported limit, not a failure.
  if (r.contains("error")) return r["error"].value("kind", "") == "unsupported";
  const json& c = r["check"];
  return !c.is_object() || c.empty() || c.contains("not_checked") || c.value("pass", false);
}

}  // namespace flatattn::cli
