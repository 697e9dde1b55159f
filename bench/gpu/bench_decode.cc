// Decode bandwidth of forward_kvcache on CUDA (issue 18's "Done when"): for each shape, the KV bytes the
// call must read (2 * B * context * Hkv * D * 2) over the kernel time, against the device-to-device copy
// bandwidth of the same bytes measured in the same run ((read + written) / time of cudaMemcpyAsync; capped
// at 4 GiB per copy). Paged bf16 caches (a shuffled page table; page 0: a contiguous cache, SDPA's layout),
// cache_seqlens = context, q_len new queries
// (no append), the planner's split count and forced ones; plus, for paged caches at context 8k, the cost of the
// append with RoPE (q_len new tokens rotated and written, the same total context) next to the plain step. On
// sm_90 also cluster-FLAT decoding with clusters of 2, 4 and 8 CTAs (FLATATTN_DECODE_CLUSTER; --no-cluster 1
// skips), mode "cluster" in the JSON (mode "planner": the planner's split-KV, "forced": num_splits given,
// "planner_last": the planner's call timed again after all the others).
// Timing: bench/gpu/timing.h (L2 flushed before every call, median of --reps).
//
//   bench_decode [--out decode.json] [--commit abc] [--batch 1,8,32,64] [--ctx 8192,16384,32768]
//                [--heads 32/32,32/8,64/8] [--qlen 1,4] [--page 0,16,256] [--force 1] [--long 1] [--reps 10]
//                [--max-gib 12] [--no-cluster 0]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/gpu/bench_util.h"
#include "bench/gpu/timing.h"
#include "flatattn/flatattn.h"

using namespace flatattn;
using namespace flatattn::bench;

namespace {

struct Shape {
  long batch, ctx, hq, hkv, qlen, page;
};

/// A device buffer for one configuration.
struct Dev {
  void* p = nullptr;
  explicit Dev(std::size_t bytes) { ok(cudaMalloc(&p, std::max<std::size_t>(bytes, 16)), "cudaMalloc"); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

int splits_of(const std::string& kernel) {
  const auto at = kernel.rfind("_splits");
  return at == std::string::npos ? 0 : std::atoi(kernel.c_str() + at + 7);
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "decode.json", commit = "unknown";
  std::vector<long> batches{1, 8, 32, 64}, ctxs{8192, 16384, 32768}, qlens{1, 4}, pages{0, 16, 256}, force{1};
  std::vector<std::pair<long, long>> heads{{32, 32}, {32, 8}, {64, 8}};
  long reps = 10, want_long = 1, max_gib = 12, no_cluster = 0;
  const long d = 128;
  const OptionTable opts{
      {"--out", [&](const std::string& v) { out = v; }},
      {"--commit", [&](const std::string& v) { commit = v; }},
      {"--batch", [&](const std::string& v) { batches = parse_list(v); }},
      {"--ctx", [&](const std::string& v) { ctxs = parse_list(v); }},
      {"--qlen", [&](const std::string& v) { qlens = parse_list(v); }},
      {"--page", [&](const std::string& v) { pages = parse_list(v); }},
      {"--force", [&](const std::string& v) { force = parse_list(v); }},
      {"--long", [&](const std::string& v) { want_long = std::stol(v); }},
      {"--reps", [&](const std::string& v) { reps = std::stol(v); }},
      {"--max-gib", [&](const std::string& v) { max_gib = std::stol(v); }},
      {"--no-cluster", [&](const std::string& v) { no_cluster = std::stol(v); }},
      {"--heads",
       [&](const std::string& v) {
         heads.clear();
         std::size_t at = 0;
         while (at < v.size()) {
           const std::size_t comma = std::min(v.find(',', at), v.size());
           const std::string item = v.substr(at, comma - at);
           const std::size_t slash = item.find('/');
           heads.emplace_back(std::stol(item.substr(0, slash)), std::stol(item.substr(slash + 1)));
           at = comma + 1;
         }
       }},
  };
  if (!parse_options(argc, argv, opts)) return 2;

  std::vector<Shape> shapes;
  for (auto [hq, hkv] : heads)
    for (long q : qlens)
      for (long ps : pages)
        for (long b : batches)
          for (long c : ctxs) shapes.push_back({b, c, hq, hkv, q, ps});
  if (want_long) {
    for (long q : qlens)
      for (long ps : pages) shapes.push_back({1, 131072, 64, 8, q, ps});
  }

  cudaDeviceProp prop{};
  ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  Timer timer;
  std::mt19937_64 rng(42);
  FILE* js = std::fopen(out.c_str(), "w");
  if (js == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", out.c_str());
    return 2;
  }
  std::fprintf(js, "{\"device\": %s, \"commit\": %s, \"dtype\": \"bf16\", \"d\": %ld, \"rows\": [\n",
               json_str(prop.name).c_str(), json_str(commit).c_str(), d);
  std::printf("%-6s %-7s %-6s %-5s %-5s %-7s %-8s %10s %10s %10s %7s\n", "B", "ctx", "Hq/Hkv", "qlen", "page", "splits",
              "planner", "ms", "GB/s", "copy GB/s", "ratio");
  bool first = true;
  for (const Shape& s : shapes) {
    const std::size_t kv_bytes = 2ull * s.batch * s.ctx * s.hkv * d * 2;
    if (kv_bytes > (std::size_t(max_gib) << 30)) continue;
    // Paged cache: B * ceil(ctx / page) pages in a shuffled order, one spare slot per sequence. Page 0: a contiguous
    // cache (B, ctx, Hkv, D) without a block table, the layout SDPA's backends read (peers_decode.py).
    const bool contiguous = s.page == 0;
    const long rows_per_page = contiguous ? s.ctx : s.page;
    const long per_seq = (s.ctx + rows_per_page - 1) / rows_per_page, max_pages = per_seq + 1, num_pages = s.batch * per_seq;
    const std::size_t page_bytes = std::size_t(rows_per_page) * s.hkv * d * 2;
    Dev kc(num_pages * page_bytes), vc(num_pages * page_bytes);
    ok(cudaMemset(kc.p, 0x3c, num_pages * page_bytes), "memset");
    ok(cudaMemset(vc.p, 0x3c, num_pages * page_bytes), "memset");
    std::vector<std::int32_t> perm(num_pages), bt(s.batch * max_pages, 0), lens(s.batch, static_cast<int>(s.ctx));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (long b = 0; b < s.batch; ++b)
      for (long p = 0; p < per_seq; ++p) bt[b * max_pages + p] = perm[b * per_seq + p];
    Dev btd(bt.size() * 4), lensd(lens.size() * 4), lens_app(lens.size() * 4);
    ok(cudaMemcpy(btd.p, bt.data(), bt.size() * 4, cudaMemcpyHostToDevice), "H2D");
    ok(cudaMemcpy(lensd.p, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice), "H2D");
    std::vector<std::int32_t> lens1(s.batch, static_cast<int>(s.ctx - s.qlen));
    ok(cudaMemcpy(lens_app.p, lens1.data(), lens1.size() * 4, cudaMemcpyHostToDevice), "H2D");
    const std::size_t q_elems = std::size_t(s.batch) * s.qlen * s.hq * d;
    Dev q(q_elems * 2), o(q_elems * 2);
    ok(cudaMemset(q.p, 0x3c, q_elems * 2), "memset");

    KvCacheArgs a;
    a.q = TensorView::contiguous(q.p, DType::bf16, {s.batch, s.qlen, s.hq, d}, Device::cuda(0));
    a.out = TensorView::contiguous(o.p, DType::bf16, {s.batch, s.qlen, s.hq, d}, Device::cuda(0));
    a.cache.k_cache = TensorView::contiguous(kc.p, DType::bf16, {num_pages, rows_per_page, s.hkv, d}, Device::cuda(0));
    a.cache.v_cache = TensorView::contiguous(vc.p, DType::bf16, {num_pages, rows_per_page, s.hkv, d}, Device::cuda(0));
    if (!contiguous) a.cache.block_table = TensorView::contiguous(btd.p, DType::i32, {s.batch, max_pages}, Device::cuda(0));
    a.cache.cache_seqlens = TensorView::contiguous(lensd.p, DType::i32, {s.batch}, Device::cuda(0));
    Options opt;
    opt.causal = true;

    // Copy bandwidth of the same bytes (two buffers of min(kv_bytes, 4 GiB)).
    const std::size_t copy_bytes = std::min<std::size_t>(kv_bytes, std::size_t{4} << 30);
    double copy_gbs = 0;
    {
      Dev src(copy_bytes), dst(copy_bytes);
      const double ms = timer.median_ms([&] { ok(cudaMemcpyAsync(dst.p, src.p, copy_bytes, cudaMemcpyDeviceToDevice), "copy"); },
                                        2, static_cast<int>(reps));
      copy_gbs = 2.0 * copy_bytes / (ms * 1e6);
    }
    std::vector<long> runs{0};
    for (long f : force) runs.push_back(f);
    if (s.ctx >= 131072)
      for (long f : {16, 32, 64, 128}) runs.push_back(f);
    const int planner = splits_of(forward_kvcache(a, opt).kernel);
    // Warm-up of the shape before its first timed row: on the H100 (stop 32, bench/results/h100-stop32-9467cde.md) the
    // first timed row after the copy measurement ran 14-17 % slower at B >= 8 than the same call timed again last
    // ("planner_last"), which matched the forced single split: the position, not the kernel.
    for (int w = 0; w < 20; ++w) forward_kvcache(a, opt);
    ok(cudaDeviceSynchronize(), "planner call");
    // Cluster-FLAT runs (sm_90): FLATATTN_DECODE_CLUSTER=n with num_splits 0, encoded as -n in `runs`.
    if (prop.major >= 9 && !no_cluster)
      for (long n : {2, 4, 8}) runs.push_back(-n);
    // The planner's call once more, last (mode "planner_last"): a check that the warm-up above removed the first-row
    // penalty (the two planner rows must agree).
    runs.push_back(0);
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const long f = runs[i];
      const bool cluster = f < 0, last = i + 1 == runs.size();
      const char* mode = f == 0 ? (last ? "planner_last" : "planner") : cluster ? "cluster" : "forced";
      if (cluster) setenv("FLATATTN_DECODE_CLUSTER", std::to_string(-f).c_str(), 1);
      a.num_splits = cluster ? 0 : static_cast<int>(f);
      Report rep;
      const double ms = timer.median_ms([&] { rep = forward_kvcache(a, opt); }, 3, static_cast<int>(reps));
      if (cluster) unsetenv("FLATATTN_DECODE_CLUSTER");
      const double gbs = kv_bytes / (ms * 1e6);
      std::printf("%-6ld %-7ld %3ld/%-2ld %-5ld %-5ld %-7d %-8s %10.4f %10.1f %10.1f %7.3f\n", s.batch, s.ctx, s.hq, s.hkv,
                  s.qlen, s.page, cluster ? static_cast<int>(-f) : splits_of(rep.kernel), f == 0 ? (last ? "yes_last" : "yes") : mode, ms, gbs, copy_gbs, gbs / copy_gbs);
      std::fprintf(js,
                   "%s  {\"batch\": %ld, \"ctx\": %ld, \"hq\": %ld, \"hkv\": %ld, \"qlen\": %ld, \"page\": %ld, "
                   "\"splits\": %d, \"planner_splits\": %d, \"mode\": \"%s\", \"kernel\": %s, \"ms\": %.5f, "
                   "\"kv_bytes\": %zu, \"gbs\": %.2f, \"copy_gbs\": %.2f, \"ratio\": %.4f}",
                   first ? "" : ",\n", s.batch, s.ctx, s.hq, s.hkv, s.qlen, s.page,
                   cluster ? static_cast<int>(-f) : splits_of(rep.kernel), planner,
                   mode, json_str(rep.kernel).c_str(), ms, kv_bytes, gbs, copy_gbs, gbs / copy_gbs);
      first = false;
    }
    a.num_splits = 0;
    // Append + RoPE (paged, context 8k): q_len new tokens per sequence rotated into the cache.
    if (s.page != 0 && s.ctx == 8192) {
      const std::size_t new_elems = std::size_t(s.batch) * s.qlen * s.hkv * d;
      Dev kn(new_elems * 2), vn(new_elems * 2), cs(std::size_t(s.ctx + 16) * d / 2 * 2), sn(std::size_t(s.ctx + 16) * d / 2 * 2);
      ok(cudaMemset(kn.p, 0x3c, new_elems * 2), "memset");
      ok(cudaMemset(vn.p, 0x3c, new_elems * 2), "memset");
      ok(cudaMemset(cs.p, 0x3c, std::size_t(s.ctx + 16) * d), "memset");
      ok(cudaMemset(sn.p, 0x3c, std::size_t(s.ctx + 16) * d), "memset");
      const double plain_ms = timer.median_ms([&] { forward_kvcache(a, opt); }, 3, static_cast<int>(reps));
      KvCacheArgs b = a;
      b.cache.cache_seqlens = TensorView::contiguous(lens_app.p, DType::i32, {s.batch}, Device::cuda(0));
      b.k_new = TensorView::contiguous(kn.p, DType::bf16, {s.batch, s.qlen, s.hkv, d}, Device::cuda(0));
      b.v_new = TensorView::contiguous(vn.p, DType::bf16, {s.batch, s.qlen, s.hkv, d}, Device::cuda(0));
      b.rotary_cos = TensorView::contiguous(cs.p, DType::bf16, {s.ctx + 16, d / 2}, Device::cuda(0));
      b.rotary_sin = TensorView::contiguous(sn.p, DType::bf16, {s.ctx + 16, d / 2}, Device::cuda(0));
      const double app_ms = timer.median_ms([&] { forward_kvcache(b, opt); }, 3, static_cast<int>(reps));
      std::printf("  append+rope: %.4f ms vs %.4f ms plain (+%.1f %%)\n", app_ms, plain_ms, 100.0 * (app_ms / plain_ms - 1));
      std::fprintf(js,
                   ",\n  {\"batch\": %ld, \"ctx\": %ld, \"hq\": %ld, \"hkv\": %ld, \"qlen\": %ld, \"page\": %ld, "
                   "\"append_rope_ms\": %.5f, \"plain_ms\": %.5f, \"append_overhead\": %.4f}",
                   s.batch, s.ctx, s.hq, s.hkv, s.qlen, s.page, app_ms, plain_ms, app_ms / plain_ms - 1);
    }
  }
  std::fprintf(js, "\n]}\n");
  std::fclose(js);
  return 0;
}
