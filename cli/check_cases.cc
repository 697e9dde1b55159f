#include "cli/check_cases.h"

#include <fmt/format.h>

namespace flatattn::cli {

std::string CheckCase::shape() const {
  if (varlen()) {
    std::string s = "varlen[";
    for (std::size_t i = 0; i < seqlens_q.size(); ++i) s += fmt::format("{}{}/{}", i ? "," : "", seqlens_q[i], seqlens_k[i]);
    return s + fmt::format("] Hq{}/{} D{}", hq, hkv, d);
  }
  return fmt::format("B{} Nq{} Nk{} Hq{}/{} D{}", batch, nq, nk, hq, hkv, d);
}

namespace {

/// One row of the feature table: shape, options and flags; dtype and dataflow are filled by the sweep.
struct Feature {
  const char* name;
  std::int64_t batch, nq, nk, hq, hkv, d;
  bool causal = false;
  Window window{};
  float softcap = 0.f;
  bool top_left = false;
  bool strided = false;
  double sd = 1.0;
  float scale = 0.f;  ///< 0: default 1/sqrt(D)
  std::vector<std::int32_t> seqlens_q = {}, seqlens_k = {};
  bool quick = false;     ///< part of --quick
  bool backward = false;  ///< a backward case (else forward, once per dataflow)
};

// clang-format off
const std::vector<Feature>& features() {
  static const std::vector<Feature> f = {
    // name                               B   Nq    Nk   Hq Hkv  D
    {"dense",                             2, 128,  128,  4,  4, 64, false, {}, 0, false, false, 1, 0, {}, {}, true},
    {"causal",                            2, 128,  128,  4,  4, 64, true,  {}, 0, false, false, 1, 0, {}, {}, true},
    {"N = 1",                             1,   1,    1,  2,  2, 64, true},
    {"odd N = 17",                        1,  17,   17,  2,  2, 64, true},
    {"odd N = 1025",                      1, 1025, 1025, 1,  1, 64, true},
    {"Nq != Nk, causal bottom-right",     1,  97,  300,  2,  2, 64, true,  {}, 0, false, false, 1, 0, {}, {}, true},
    {"Nq != Nk, causal top-left",         1,  97,  300,  2,  2, 64, true,  {}, 0, true},
    {"Nq > Nk causal: fully masked rows", 1,  64,   32,  2,  2, 64, true},
    {"GQA 8:2",                           1,  96,   96,  8,  2, 64, true,  {}, 0, false, false, 1, 0, {}, {}, true},
    {"MQA 4:1",                           1,  96,   96,  4,  1, 64},
    {"D = 32",                            1,  70,   70,  2,  2, 32, true},
    {"D = 80",                            1,  70,   70,  2,  2, 80, true},
    {"D = 96",                            1,  70,   70,  2,  2, 96},
    {"D = 128",                           1,  70,   70,  2,  2, 128, true},
    {"D = 256",                           1,  40,   40,  1,  1, 256},
    {"window (32,0) causal",              1, 200,  200,  2,  2, 64, true,  {32, 0}, 0, false, false, 1, 0, {}, {}, true},
    {"window (16,8)",                     1, 150,  150,  2,  2, 64, false, {16, 8}},
    {"window (0,0): diagonal only",       1,  50,   50,  2,  2, 64, false, {0, 0}},
    {"window (20,-1) top-left, Nq < Nk",  1,  40,  120,  2,  2, 64, false, {20, -1}, 0, true},
    {"softcap 30, sd 3",                  1, 128,  128,  2,  2, 64, true,  {}, 30, false, false, 3, 0, {}, {}, true},
    {"large logits (sd 100: |S| ~ 1e4)",  1,  64,   64,  2,  2, 64, false, {}, 0, false, false, 100},
    {"varlen incl. empty sequence",       0,   0,    0,  4,  2, 64, true,  {}, 0, false, false, 1, 0,
                                          {37, 0, 128, 5}, {37, 9, 200, 5}, true},
    {"strided (B,H,N,D) + padding",       2, 100,  100,  4,  2, 64, true,  {}, 0, false, true, 1, 0, {}, {}, true},
    // backward: dq, dk, dv against the oracle's exact gradients
    {"dense",                             2,  64,   64,  4,  4, 64, false, {}, 0, false, false, 1, 0, {}, {}, true, true},
    {"causal GQA 4:2",                    1,  97,   97,  4,  2, 64, true,  {}, 0, false, false, 1, 0, {}, {}, true, true},
    {"Nq > Nk causal: fully masked rows", 1,  45,   17,  3,  1, 40, true,  {}, 0, false, true, 1, 0, {}, {}, false, true},
    {"window (7,-1) top-left",            1,  20,   50,  2,  2, 32, true,  {7, -1}, 0, true, false, 1, 0, {}, {}, false, true},
    {"softcap 20, sd 2, D = 80",          1,  30,   44,  2,  1, 80, false, {}, 20, false, false, 2, 0, {}, {}, false, true},
    {"varlen incl. empty sequence",       0,   0,    0,  4,  2, 32, true,  {}, 0, false, false, 1, 0,
                                          {12, 0, 30}, {12, 5, 41}, true, true},
  };
  return f;
}
// clang-format on

}  // namespace

std::vector<CheckCase> check_sweep(const std::vector<DType>& dtypes, bool quick) {
  std::vector<CheckCase> out;
  for (const Feature& f : features()) {
    if (quick && !f.quick) continue;
    for (DType dt : dtypes) {
      CheckCase c;
      c.feature = f.name;
      c.batch = f.seqlens_q.empty() ? f.batch : static_cast<std::int64_t>(f.seqlens_q.size());
      c.nq = f.nq;
      c.nk = f.nk;
      c.hq = f.hq;
      c.hkv = f.hkv;
      c.d = f.d;
      c.dtype = dt;
      c.options.causal = f.causal;
      c.options.causal_align = f.top_left ? CausalAlign::top_left : CausalAlign::bottom_right;
      c.options.window = f.window;
      c.options.softcap = f.softcap;
      if (f.scale > 0) c.options.softmax_scale = f.scale;
      c.seqlens_q = f.seqlens_q;
      c.seqlens_k = f.seqlens_k;
      c.strided = f.strided;
      c.sd = f.sd;
      c.backward = f.backward;
      if (f.backward) {
        out.push_back(c);
        continue;
      }
      for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
        c.options.dataflow = df;
        out.push_back(c);
      }
    }
  }
  return out;
}

}  // namespace flatattn::cli
