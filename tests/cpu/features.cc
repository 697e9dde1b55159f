#include "tests/cpu/features.h"

namespace flatattn::testing {

const char* feature_name(Feature f) {
  constexpr const char* names[] = {"plain",  "short_q", "causal_br", "causal_br_tall", "causal_tl",
                                   "causal_tl_wide", "window", "window_causal_tl", "softcap", "gqa",
                                   "mqa", "varlen", "strided", "large_logits", "fully_masked"};
  return names[static_cast<int>(f)];
}

Case feature_case(Feature f, DType dt) {
  Case c;
  c.dtype = dt;
  c.batch = 2, c.nq = 97, c.nk = 97, c.hq = 2, c.hkv = 2, c.d = 64;
  c.options.return_lse = true;
  switch (f) {
    case Feature::plain: break;
    case Feature::short_q: c.nq = 33, c.nk = 130; break;
    case Feature::causal_br: c.nq = 70, c.nk = 150, c.options.causal = true; break;
    case Feature::causal_br_tall: c.nq = 150, c.nk = 70, c.options.causal = true; break;  // top rows fully masked
    case Feature::causal_tl:
      c.nq = 150, c.nk = 70, c.options.causal = true, c.options.causal_align = CausalAlign::top_left;
      break;
    case Feature::causal_tl_wide:
      c.nq = 70, c.nk = 150, c.options.causal = true, c.options.causal_align = CausalAlign::top_left;
      break;
    case Feature::window: c.nq = 120, c.nk = 140, c.options.window = {20, 5}; break;
    case Feature::window_causal_tl:
      c.nq = 130, c.nk = 100, c.options.causal = true, c.options.window = {16, 0};
      c.options.causal_align = CausalAlign::top_left;  // rows past Nk + 16 see nothing
      break;
    case Feature::softcap: c.options.softcap = 5.f, c.options.causal = true, c.input_sd = 2.0; break;
    case Feature::gqa: c.hq = 6, c.hkv = 2, c.d = 80, c.options.causal = true; break;
    case Feature::mqa: c.hq = 4, c.hkv = 1, c.d = 40, c.nq = 60, c.nk = 110; break;
    case Feature::varlen:
      c.varlen = true, c.hq = 4, c.hkv = 2, c.options.causal = true;
      c.seqlens_q = {0, 1, 37, 90, 5};
      c.seqlens_k = {5, 1, 0, 120, 5};  // an empty query, a length-1, an empty key sequence
      break;
    case Feature::strided: c.strided = true, c.hq = 4, c.hkv = 2, c.options.window = {30, -1}; break;
    case Feature::large_logits: c.input_sd = 100.0, c.options.causal = true; break;  // scale |S| ~ 1e4
    case Feature::fully_masked:
      c.nq = 60, c.nk = 20, c.options.causal = true, c.options.window = {3, 0};  // rows 0..39 see nothing
      break;
  }
  return c;
}

}  // namespace flatattn::testing
