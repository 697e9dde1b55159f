#include "src/check/features.h"

#include <stdexcept>
#include <string>

namespace flatattn::check {

namespace {

void causal(Case& c) { c.options.causal = true; }
void top_left(Case& c) { c.options.causal_align = CausalAlign::top_left; }
void dropout(Case& c, float p) {
  c.options.dropout_p = p;
  c.options.dropout_seed = 0x9e3779b97f4a7c15ull;
  c.options.dropout_offset = 0x0000000300000040ull;
}

// clang-format off
constexpr Feature kFeatures[] = {
  // name               label                                     B   Nq   Nk  Hq Hkv  D
  {"plain",            "dense",                                   2,  97,  97, 2, 2, 64, [](Case&) {}, true},
  {"short_q",          "Nq < Nk",                                 2,  33, 130, 2, 2, 64, [](Case&) {}, false},
  {"causal",           "causal",                                  2,  97,  97, 2, 2, 64, causal, true},
  {"causal_br",        "causal bottom-right, Nq < Nk",            2,  70, 150, 2, 2, 64, causal, true},
  {"causal_br_tall",   "causal bottom-right, Nq > Nk: fully masked rows",
                                                                  2, 150,  70, 2, 2, 64, causal, false},
  {"causal_tl",        "causal top-left, Nq > Nk",                2, 150,  70, 2, 2, 64,
   [](Case& c) { causal(c), top_left(c); }, false},
  {"causal_tl_wide",   "causal top-left, Nq < Nk",                2,  70, 150, 2, 2, 64,
   [](Case& c) { causal(c), top_left(c); }, false},
  {"window",           "window (20,5)",                           2, 120, 140, 2, 2, 64,
   [](Case& c) { c.options.window = {20, 5}; }, true},
  {"sliding_window",   "window (32,0) causal",                    1, 150, 150, 2, 2, 64,
   [](Case& c) { causal(c), c.options.window = {32, 0}; }, true},
  {"window_tl",        "window (20,-1) top-left, Nq < Nk",        1,  40, 120, 2, 2, 64,
   [](Case& c) { top_left(c), c.options.window = {20, -1}; }, false},
  {"window_causal_tl", "window (16,0) causal top-left: rows past Nk + 16 see nothing",
                                                                  2, 130, 100, 2, 2, 64,
   [](Case& c) { causal(c), top_left(c), c.options.window = {16, 0}; }, false},
  {"window_diagonal",  "window (0,0), Nq > Nk: diagonal only, fully masked rows",
                                                                  2,  90,  50, 2, 2, 64,
   [](Case& c) { c.options.window = {0, 0}; }, false},
  {"softcap",          "softcap 5, sd 2, causal",                 2,  97,  97, 2, 2, 64,
   [](Case& c) { causal(c), c.options.softcap = 5.f, c.input_sd = 2.0; }, true},
  {"softcap_window",   "softcap 30, sd 3, window (31,5)",         1, 120, 140, 2, 2, 64,
   [](Case& c) { c.options.softcap = 30.f, c.input_sd = 3.0, c.options.window = {31, 5}; }, false},
  {"gqa",              "GQA 6:2, D = 80, causal",                 2,  97,  97, 6, 2, 80,
   [](Case& c) { c.hq = 6, c.hkv = 2, causal(c); }, true},
  {"mqa",              "MQA 4:1, D = 40",                         2,  60, 110, 4, 1, 40,
   [](Case& c) { c.hq = 4, c.hkv = 1; }, false},
  {"varlen",           "varlen incl. empty sequences, causal",    0,   0,   0, 4, 2, 64,
   [](Case& c) {
     causal(c);
     c.varlen = true;
     c.seqlens_q = {0, 1, 37, 90, 5};  // an empty query, a length-1, an empty key sequence
     c.seqlens_k = {5, 1, 0, 120, 5};
     c.batch = 5;
   }, true},
  {"strided",          "strided (B,H,N,D) + padding, window (30,-1)",
                                                                  2,  97,  97, 4, 2, 64,
   [](Case& c) { c.strided = true, c.options.window = {30, -1}; }, true},
  {"large_logits",     "large logits (sd 100: |S| ~ 1e4), causal", 2, 97,  97, 2, 2, 64,
   [](Case& c) { causal(c), c.input_sd = 100.0; }, false},
  {"fully_masked",     "causal window (3,0), Nq > Nk: rows 0..39 see nothing",
                                                                  2,  60,  20, 2, 2, 64,
   [](Case& c) { causal(c), c.options.window = {3, 0}; }, false},
  {"negative_scale",   "negative scale -0.2",                     2,  64,  96, 2, 2, 64,
   [](Case& c) { c.options.softmax_scale = -0.2f; }, false},
  // Dropout: (seed, offset) with high words set, so both halves of the Philox key and counter are exercised.
  {"dropout",          "dropout 0.17",                            2,  97, 110, 2, 2, 64,
   [](Case& c) { dropout(c, 0.17f); }, true},
  {"dropout_causal",   "dropout 0.1, causal bottom-right, Nq < Nk", 2, 70, 150, 2, 2, 64,
   [](Case& c) { causal(c), dropout(c, 0.1f); }, true},
  {"dropout_softcap",  "dropout 0.5, softcap 5, sd 2, causal",    2,  97,  97, 2, 2, 64,
   [](Case& c) { causal(c), c.options.softcap = 5.f, c.input_sd = 2.0, dropout(c, 0.5f); }, true},
  {"dropout_window_gqa", "dropout 0.9, window (20,5), GQA 6:2, D = 80", 1, 120, 140, 6, 2, 80,
   [](Case& c) { c.hq = 6, c.hkv = 2, c.options.window = {20, 5}, dropout(c, 0.9f); }, false},
  {"dropout_varlen",   "dropout 0.2, varlen incl. empty sequences, causal top-left", 0, 0, 0, 4, 2, 64,
   [](Case& c) {
     causal(c), top_left(c), dropout(c, 0.2f);
     c.varlen = true;
     c.seqlens_q = {0, 1, 37, 90, 70};
     c.seqlens_k = {5, 1, 0, 120, 70};
     c.batch = 5;
   }, false},
};
// clang-format on

}  // namespace

std::span<const Feature> features() { return kFeatures; }

const Feature& feature(std::string_view name) {
  for (const Feature& f : kFeatures)
    if (name == f.name) return f;
  throw std::invalid_argument("no feature named " + std::string(name));
}

Case feature_case(const Feature& f, DType dt) {
  Case c;
  c.dtype = dt;
  c.batch = f.batch, c.nq = f.nq, c.nk = f.nk, c.hq = f.hq, c.hkv = f.hkv, c.d = f.d;
  c.options.return_lse = true;
  f.apply(c);
  return c;
}

Case with_feature(Case base, std::string_view name) {
  feature(name).apply(base);
  return base;
}

}  // namespace flatattn::check
