#include "cli/check_cases.h"

#include <fmt/format.h>

#include "cli/sparse_workload.h"
#include "src/check/features.h"

namespace flatattn::cli {

std::string shape_str(const check::Case& c) {
  if (c.varlen) {
    std::string s = "varlen[";
    for (std::size_t i = 0; i < c.seqlens_q.size(); ++i) s += fmt::format("{}{}/{}", i ? "," : "", c.seqlens_q[i], c.seqlens_k[i]);
    return s + fmt::format("] Hq{}/{} D{}", c.hq, c.hkv, c.d);
  }
  return fmt::format("B{} Nq{} Nk{} Hq{}/{} D{}", c.batch, c.nq, c.nk, c.hq, c.hkv, c.d);
}

namespace {

/// Lengths and head dims beyond the feature table's cases (forward only): one row, odd lengths and a long
/// odd row block, and every head dim family.
struct Extra {
  const char* label;
  std::int64_t batch, nq, nk, hq, hkv, d;
  bool causal;
};

// clang-format off
constexpr Extra kExtras[] = {
  // label           B    Nq    Nk  Hq Hkv   D  causal
  {"N = 1",          1,    1,    1,  2,  2,  64, true},
  {"odd N = 17",     1,   17,   17,  2,  2,  64, true},
  {"odd N = 1025",   1, 1025, 1025,  1,  1,  64, true},
  {"D = 32",         1,   70,   70,  2,  2,  32, true},
  {"D = 80",         1,   70,   70,  2,  2,  80, true},
  {"D = 96",         1,   70,   70,  2,  2,  96, false},
  {"D = 128",        1,   70,   70,  2,  2, 128, true},
  {"D = 256",        1,   40,   40,  1,  1, 256, false},
};
// clang-format on

void push_forward(std::vector<CheckCase>& out, const std::string& label, check::Case c) {
  for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
    c.options.dataflow = df;
    out.push_back({label, c, false, nullptr});
  }
}

}  // namespace

std::vector<CheckCase> check_sweep(const std::vector<DType>& dtypes, bool quick) {
  std::vector<CheckCase> out;
  for (const check::Feature& f : check::features()) {
    if (quick && !f.quick) continue;
    for (DType dt : dtypes) push_forward(out, f.label, check::feature_case(f, dt));
  }
  if (!quick) {
    for (const Extra& e : kExtras)
      for (DType dt : dtypes) {
        check::Case c;
        c.dtype = dt;
        c.batch = e.batch, c.nq = e.nq, c.nk = e.nk, c.hq = e.hq, c.hkv = e.hkv, c.d = e.d;
        c.options.causal = e.causal;
        push_forward(out, e.label, c);
      }
  }
  // backward: dq, dk, dv against the oracle's exact gradients
  for (const check::Feature& f : check::features()) {
    if (quick && !f.quick) continue;
    for (DType dt : dtypes) out.push_back({f.label, check::feature_case(f, dt), true, nullptr});
  }
  return out;
}

std::vector<CheckCase> workload_cases(const Workload& w, const std::vector<DType>& dtypes) {
  const std::string label = "workload" + sparse_str(w);
  const std::shared_ptr<const check::CaseTensors> mask =
      w.sparse() ? std::make_shared<const check::CaseTensors>(sparse_lists(w)) : nullptr;
  std::vector<CheckCase> out;
  for (DType dt : dtypes) {
    Workload wd = w;
    wd.dtype = dt;
    check::Case c = sparse_case(wd);
    for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
      c.options.dataflow = df;
      out.push_back({label, c, false, mask});
    }
    c.options.dataflow = Dataflow::automatic;
    out.push_back({label, c, true, mask});
  }
  return out;
}

}  // namespace flatattn::cli
