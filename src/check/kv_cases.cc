#include "src/check/kv_cases.h"

#include <array>

namespace flatattn::check {

KvCase kv_base(DType dt, std::int64_t d, std::int64_t max_context) {
  KvCase c;
  c.dtype = dt;
  c.batch = 3;
  c.nq = 1;
  c.nnew = 1;
  c.hq = 8;
  c.hkv = 2;
  c.d = d;
  c.max_context = max_context;
  c.options.return_lse = true;
  return c;
}

namespace {

KvCase base(DType dt) { return kv_base(dt, 64, 300); }

}  // namespace

std::vector<KvFeature> kv_features(DType dt) {
  std::vector<KvFeature> f;
  auto add = [&](std::string name, auto&& edit) {
    KvCase c = base(dt);
    edit(c);
    f.push_back({std::move(name), c});
  };
  for (std::int64_t ps : {1, 16, 64, 256})
    add("page" + std::to_string(ps), [&](KvCase& c) { c.page_size = ps; });
  add("unshuffled", [](KvCase& c) { c.shuffle_pages = false; });
  add("shared_pages", [](KvCase& c) { c.batch = 4, c.seqlens = {200, 150, 40, 200}, c.share_pages = true, c.nq = 2, c.nnew = 2, c.options.causal = true; });
  add("empty_and_one", [](KvCase& c) { c.seqlens = {0, 1, 0}; });
  add("empty_no_append", [](KvCase& c) { c.seqlens = {0, 5, 0}, c.nnew = 0; });
  add("ragged", [](KvCase& c) { c.seqlens = {1, 257, 63}, c.nnew = 3, c.nq = 3, c.options.causal = true; });
  add("contiguous", [](KvCase& c) { c.paged = false; });
  add("contiguous_batch_idx", [](KvCase& c) { c.paged = false, c.batch_idx = true, c.nnew = 2; });
  add("leftpad", [](KvCase& c) { c.leftpad = true, c.nq = 2, c.nnew = 2, c.options.causal = true; });
  add("leftpad_contiguous", [](KvCase& c) { c.leftpad = true, c.paged = false, c.rotary_dim = 64; });
  add("rope_gptj", [](KvCase& c) { c.rotary_dim = 64, c.rotary_interleaved = true; });
  add("rope_neox", [](KvCase& c) { c.rotary_dim = 64, c.rotary_interleaved = false; });
  add("rope_partial_causal", [](KvCase& c) { c.rotary_dim = 32, c.nq = 4, c.nnew = 4, c.options.causal = true; });
  add("rope_partial_gptj_window", [](KvCase& c) { c.rotary_dim = 16, c.rotary_interleaved = true, c.nq = 3, c.nnew = 3, c.options.window = {20, 0}; });
  add("nq4_causal", [](KvCase& c) { c.nq = 4, c.nnew = 4, c.options.causal = true; });
  add("nq16_causal_no_append", [](KvCase& c) { c.nq = 16, c.nnew = 0, c.seqlens = {16, 100, 300}, c.options.causal = true; });
  add("chunked_prefill", [](KvCase& c) { c.nq = 48, c.nnew = 48, c.seqlens = {0, 37, 200}, c.options.causal = true; });
  add("window", [](KvCase& c) { c.nq = 5, c.nnew = 5, c.options.window = {32, 0}; });
  add("window_both", [](KvCase& c) { c.nq = 6, c.nnew = 2, c.options.window = {16, 3}; });
  add("mha", [](KvCase& c) { c.hq = 4, c.hkv = 4; });
  add("mqa", [](KvCase& c) { c.hq = 8, c.hkv = 1, c.nq = 2, c.nnew = 2, c.options.causal = true; });
  add("softcap", [](KvCase& c) { c.options.softcap = 5.f; });
  add("alibi", [](KvCase& c) { c.alibi = 1, c.nq = 2, c.nnew = 2, c.options.causal = true; });
  add("alibi_per_seq", [](KvCase& c) { c.alibi = 2, c.leftpad = true; });
  add("sinks", [](KvCase& c) { c.sinks = true, c.seqlens = {0, 10, 250}; });
  for (int s : {1, 2, 5, 32})
    add("splits" + std::to_string(s), [&](KvCase& c) { c.num_splits = s, c.batch = 1, c.hkv = 1, c.hq = 4, c.seqlens = {700}; });
  add("no_lse", [](KvCase& c) { c.options.return_lse = false; });
  add("head_dim_80", [](KvCase& c) { c.d = 80, c.rotary_dim = 80; });
  add("head_dim_128", [](KvCase& c) { c.d = 128, c.hq = 32, c.hkv = 8, c.batch = 2; });
  // Paged prefill: varlen queries (cu_seqlens_q) over the cache, causal per sequence, no append.
  add("varlen_prefill", [](KvCase& c) { c.batch = 3, c.nnew = 0, c.q_lens = {12, 0, 1}, c.seqlens = {30, 4, 90}, c.options.causal = true; });
  add("varlen_prefill_window_gqa", [](KvCase& c) { c.batch = 3, c.nnew = 0, c.hq = 8, c.hkv = 2, c.q_lens = {1, 40, 7}, c.seqlens = {1, 300, 7}, c.options.window = {24, 0}, c.num_splits = 3; });
  return f;
}

KvCase kv_random_case(std::mt19937_64& rng, DType dt, std::int64_t max_context) {
  auto uni = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
  KvCase c;
  c.dtype = dt;
  c.batch = uni(1, 4);
  c.hkv = uni(1, 3);
  c.hq = c.hkv * uni(1, 4);
  c.d = std::array<std::int64_t, 5>{8, 24, 64, 80, 128}[uni(0, 4)];
  c.nq = uni(0, 3) == 0 ? uni(17, 40) : uni(1, 16);
  c.nnew = uni(0, 2) == 0 ? 0 : (uni(0, 1) ? c.nq : uni(1, 4));
  c.paged = uni(0, 3) != 0;
  c.page_size = std::array<std::int64_t, 5>{1, 3, 16, 64, 256}[uni(0, 4)];
  c.max_context = uni(0, max_context);
  c.share_pages = uni(0, 3) == 0;
  c.leftpad = uni(0, 4) == 0;
  c.batch_idx = !c.paged && uni(0, 1);
  if (c.nnew > 0 && uni(0, 1)) c.rotary_dim = 2 * uni(1, c.d / 2), c.rotary_interleaved = uni(0, 1);
  c.options.causal = uni(0, 1);
  if (uni(0, 3) == 0) c.options.window = {uni(0, 50), c.options.causal ? 0 : uni(-1, 5)};
  if (uni(0, 4) == 0) {
    c.options.softcap = 10.f;
  } else if (uni(0, 4) == 0) {
    c.alibi = static_cast<int>(uni(1, 2));
  }
  c.sinks = uni(0, 4) == 0;
  c.num_splits = uni(0, 1) ? 0 : static_cast<int>(uni(1, 9));
  c.options.return_lse = uni(0, 3) != 0;
  if (c.nnew == 0 && c.rotary_dim == 0 && uni(0, 2) == 0)  // paged prefill: ragged Nq_b in [0, nq]
    for (std::int64_t b = 0; b < c.batch; ++b) c.q_lens.push_back(static_cast<std::int32_t>(uni(0, c.nq)));
  return c;
}

}  // namespace flatattn::check
