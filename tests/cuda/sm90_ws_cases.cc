// The case lists of the warp-specialized sm90 forward's suite: sm90_ws_cases.h says what each holds.
#include "tests/cuda/sm90_ws_cases.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace flatattn::testing {

Case ws_base_case(DType dt, std::int64_t nq, std::int64_t nk, std::int64_t d) {
  Case c = small_case(dt, nq, nk, d);  // B = 2, Hq = 2, Hkv = 1 (GQA), LSE
  c.options.dataflow = Dataflow::flash;
  return c;
}

bool ws_serves(const Case& c) {
  if (c.has_bias() || c.sparse.on()) return false;
  if (c.varlen) {
    std::int64_t rows = 0;
    for (std::int32_t n : c.seqlens_q) rows += n;
    return rows > 0;
  }
  return c.nq > 0 && c.batch > 0;
}

std::vector<Case> ws_varlen_cases(DType dt, std::int64_t d) {
  auto varlen = [&](std::vector<std::int32_t> q, std::vector<std::int32_t> k) {
    Case c = ws_base_case(dt, 0, 0, d);
    c.varlen = true;
    c.batch = static_cast<std::int64_t>(q.size());
    c.seqlens_q = std::move(q);
    c.seqlens_k = std::move(k);
    return c;
  };
  std::vector<Case> v;
  v.push_back(varlen({5, 130, 64, 0, 1, 200}, {7, 130, 200, 3, 1, 0}));  // empty q, empty k, 1 row
  v.push_back(varlen({1, 1, 1}, {1, 300, 0}));
  v.push_back(varlen({129, 300}, {1100, 65}));  // wraps the ring; the second sequence shorter in keys
  for (CausalAlign align : {CausalAlign::bottom_right, CausalAlign::top_left}) {
    Case c = varlen({37, 0, 260, 128, 1}, {100, 50, 129, 300, 64});
    c.options.causal = true;
    c.options.causal_align = align;
    v.push_back(c);
    Case r = varlen({300, 64}, {70, 200});  // Nq > Nk: fully masked rows (bottom-right)
    r.options.causal = true;
    r.options.causal_align = align;
    v.push_back(r);
  }
  {
    Case c = varlen({150, 3, 270}, {170, 90, 270});
    c.options.window.left = 40;
    c.options.window.right = 7;
    v.push_back(c);
  }
  {
    Case c = varlen({90, 257}, {300, 129});
    c.options.softcap = 30.f;
    c.options.causal = true;
    v.push_back(c);
  }
  {
    Case c = varlen({90, 0, 257}, {300, 5, 129});
    c.alibi = 2;
    c.options.causal = true;
    v.push_back(c);
    c.options.causal = false;
    c.alibi = 1;
    c.sinks = true;
    v.push_back(c);
  }
  return v;
}

std::vector<Case> ws_variant_cases(DType dt, std::int64_t d) {
  std::vector<Case> v;
  for (int variant : {0, 1}) {
    auto with = [&](Case c) {
      if (variant == 0) {
        c.options.softcap = 20.f;
      } else {
        c.alibi = 2;
      }
      return c;
    };
    v.push_back(with(ws_base_case(dt, 200, 330, d)));
    Case c = with(ws_base_case(dt, 300, 129, d));
    c.options.causal = true;
    v.push_back(c);
    c.options.causal_align = CausalAlign::top_left;
    v.push_back(c);
    Case w = with(ws_base_case(dt, 257, 257, d));
    w.options.window.left = 64;
    w.options.window.right = 0;
    v.push_back(w);
    Case k = with(ws_base_case(dt, 130, 1025, d));  // wraps the ring
    k.sinks = true;
    v.push_back(k);
  }
  v[0].input_sd = 4.0;  // large logits through the soft cap
  return v;
}

std::vector<Case> ws_dropout_cases(DType dt, std::int64_t d) {
  std::vector<Case> v;
  std::uint64_t k = 0x5eed0000u + static_cast<std::uint64_t>(d);
  auto drop = [&](Case c, float p) {
    c.options.dropout_p = p;
    c.options.dropout_seed = k * 0x9E3779B97F4A7C15ull;
    c.options.dropout_offset = ++k;
    return c;
  };
  v.push_back(drop(ws_base_case(dt, 200, 330, d), 0.1f));
  for (CausalAlign align : {CausalAlign::bottom_right, CausalAlign::top_left}) {
    Case c = drop(ws_base_case(dt, 300, 129, d), 0.17f);
    c.options.causal = true;
    c.options.causal_align = align;
    v.push_back(c);
  }
  {
    Case w = drop(ws_base_case(dt, 257, 1025, d), 0.5f);  // wraps the ring
    w.options.window.left = 64;
    w.options.window.right = 3;
    v.push_back(w);
    Case g = drop(ws_base_case(dt, 130, 260, d), 0.1f);  // GQA 4:1, sinks, softcap (the dropout_softcap variant)
    g.hq = 4, g.hkv = 1;
    g.sinks = true;
    g.options.softcap = 30.f;
    v.push_back(g);
    Case at = drop(ws_base_case(dt, 150, 200, d), 0.3f);
    at.options.dropout_row0 = 1037, at.options.dropout_col0 = 4096 + 64;
    at.options.causal = true;
    v.push_back(at);
  }
  for (const Case& c : ws_varlen_cases(dt, d))
    if (c.alibi == 0) v.push_back(drop(c, 0.2f));  // ALiBi comes without dropout (validation)
  return v;
}

std::vector<Case> ws_cases(DType dt) {
  std::vector<Case> v;
  for (std::int64_t d : {64, 128, 256}) {
    // around the 128- (D = 64: 192-) row tile and the 128- (D = 256: 80-) key block; 1025 and 2100 keys wrap the ring
    for (std::int64_t n : {1, 17, 64, 80, 81, 127, 128, 129, 160, 191, 192, 193, 255, 256, 257, 1025}) v.push_back(ws_base_case(dt, n, n, d));
    for (auto [nq, nk] : {std::pair{300, 2100}, {2100, 300}}) v.push_back(ws_base_case(dt, nq, nk, d));
    for (bool causal : {false, true}) {
      for (auto [nq, nk] : {std::pair{100, 37}, {37, 300}, {200, 20}, {513, 700}, {700, 513}, {129, 1100}}) {
        Case c = ws_base_case(dt, nq, nk, d);
        c.options.causal = causal;
        v.push_back(c);
        if (causal) {
          c.options.causal_align = CausalAlign::top_left;
          v.push_back(c);
        }
      }
    }
    for (Case c : feature_mix(dt, d, 400, 350)) {  // windows, large logits, negative scale, GQA/MQA strided
      if (!ws_serves(c)) continue;
      c.options.dataflow = Dataflow::flash;
      v.push_back(c);
    }
    {  // sinks, one of them far above the logits
      Case c = ws_base_case(dt, 150, 333, d);
      c.sinks = true;
      c.sink_mean = 4.0;
      v.push_back(c);
      c.options.causal = true;
      v.push_back(c);
    }
    {  // no LSE requested, one sequence, many heads
      Case c = ws_base_case(dt, 260, 260, d);
      c.options.return_lse = false;
      c.batch = 1, c.hq = 8, c.hkv = 8;
      v.push_back(c);
    }
    for (const Case& c : ws_variant_cases(dt, d)) v.push_back(c);
    for (const Case& c : ws_varlen_cases(dt, d)) v.push_back(c);
    for (const Case& c : ws_dropout_cases(dt, d)) v.push_back(c);
  }
  // zero-padded head dims (the tensor map's column bound fills the rest with zeros; 200 and 248 run D = 256)
  for (std::int64_t d : {40, 56, 104, 120, 200, 248}) v.push_back(ws_base_case(dt, 150, 170, d));
  for (const Case& c : edge_cases(dt))
    if (ws_serves(c)) v.push_back(c);
  return v;
}

}  // namespace flatattn::testing
