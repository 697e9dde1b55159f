#include "cli/run_decode.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/buffers.h"
#include "cli/device.h"
#include "cli/flags.h"
#include "cli/machine.h"
#include "flatattn/kvcache.h"
#include "src/check/kv_case.h"
#include "src/check/rule.h"
#include "src/reference/reference_kvcache.h"

namespace flatattn::cli {

namespace {

/// The host tensors of a case with device mirrors (CUDA) of the ones a call touches.
struct DeviceCase {
  std::vector<DeviceMirror> mirrors;
  KvCacheArgs args;
};

DeviceCase upload(const check::KvCaseTensors& t) {
  DeviceCase d;
  d.args = t.args(Device::cuda());
  const check::HostTensor* hosts[] = {&t.q, &t.k_cache, &t.v_cache, &t.cache_seqlens, &t.block_table, &t.k_new,
                                      &t.v_new, &t.out, &t.lse, &t.alibi, &t.sinks, &t.rotary_cos, &t.rotary_sin};
  TensorView* views[] = {&d.args.q, &d.args.cache.k_cache, &d.args.cache.v_cache, &d.args.cache.cache_seqlens,
                         &d.args.cache.block_table, &d.args.k_new, &d.args.v_new, &d.args.out, &d.args.lse,
                         &d.args.alibi_slopes, &d.args.sinks, &d.args.rotary_cos, &d.args.rotary_sin};
  d.mirrors.resize(std::size(hosts));
  for (std::size_t i = 0; i < std::size(hosts); ++i) {
    if (!views[i]->present()) continue;
    d.mirrors[i].upload(*hosts[i]);
    *views[i] = d.mirrors[i].view(*hosts[i]);
  }
  return d;
}

}  // namespace

void run_decode(const Workload& w, const DecodeFlags& f) {
  if (w.nk < 1) throw UsageError("--n", fmt::format("context {}", w.nk), ">= 1 (tokens per sequence after the step)");
  check::KvCase c;
  c.batch = w.batch;
  c.nq = f.nq;
  c.nnew = f.nq;  // the step's tokens are appended, as a decode step with speculation does
  c.hq = w.hq;
  c.hkv = w.hkv;
  c.d = w.d;
  c.dtype = w.dtype;
  c.paged = true;
  c.page_size = f.page_size;
  c.seqlens.assign(static_cast<std::size_t>(w.batch), static_cast<std::int32_t>(std::max<std::int64_t>(0, w.nk - f.nq)));
  c.options = w.options();
  c.options.dataflow = Dataflow::automatic;
  c.options.causal_align = CausalAlign::bottom_right;
  c.options.return_lse = false;
  c.num_splits = f.num_splits;
  c.alibi = w.alibi ? 1 : 0;
  c.sinks = w.sinks;
  std::mt19937_64 rng(w.seed);
  check::KvCaseTensors t = check::make_kv_case(c, rng);
  const check::KvCaseTensors before = t;
  const bool cuda = w.device == DeviceKind::cuda;
  DeviceCase dev;
  if (cuda) dev = upload(t);
  const KvCacheArgs args = cuda ? dev.args : t.args();
  auto call = [&] { return forward_kvcache(args, c.options); };

  // The first call is checked (out against the oracle, the appended cache rows too).
  const Report rep = call();
  if (cuda) {
    gpu::synchronize();
    dev.mirrors[7].download(t.out);
    dev.mirrors[1].download(t.k_cache);
    dev.mirrors[2].download(t.v_cache);
  }
  check::Verdict verdict;
  std::string cache_check;
  if (f.check) {
    check::KvCaseTensors oracle = before, naive = before;
    oracle.out = check::HostTensor::make(DType::f64, before.out.shape);
    ref::forward_kvcache(oracle.args(), c.options, ref::Precision::f64);
    ref::forward_kvcache(naive.args(), c.options, ref::Precision::input);
    verdict = check::judge(t.out, oracle.out, &naive.out, c.dtype);
    cache_check = check::compare_caches(t, oracle, before);
  }
  for (int i = 1; i < f.warmup; ++i) call();
  std::vector<double> ms;
  for (int i = 0; i < f.reps; ++i) {
    if (cuda) {
      gpu::EventTimer timer;
      timer.start();
      call();
      ms.push_back(timer.stop_ms());
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      call();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  const double kv_bytes = 2.0 * static_cast<double>(w.batch) * static_cast<double>(w.nk) * static_cast<double>(w.hkv) *
                          static_cast<double>(w.d) * static_cast<double>(element_size(w.dtype));
  const double gbs = kv_bytes / (med * 1e-3) / 1e9;
  const bool ok = !f.check || (verdict.pass && cache_check.empty());
  if (f.json) {
    nlohmann::json j = {{"command", "run --decode"}, {"workload", w.to_json()}, {"page_size", f.page_size},
                        {"nq", f.nq}, {"backend", rep.backend}, {"kernel", rep.kernel}, {"median_ms", med},
                        {"min_ms", ms.front()}, {"kv_bytes", kv_bytes}, {"bandwidth_gbs", gbs},
                        {"check", f.check ? verdict.str() : "skipped"}, {"cache_check", cache_check.empty() ? "PASS" : cache_check},
                        {"machine", this_machine().to_json()}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("flatattn run --decode: B=%lld context=%lld Nq=%lld Hq=%lld Hkv=%lld D=%lld %s, page size %lld (%s)\n",
                static_cast<long long>(w.batch), static_cast<long long>(w.nk), static_cast<long long>(f.nq),
                static_cast<long long>(w.hq), static_cast<long long>(w.hkv), static_cast<long long>(w.d),
                std::string(name(w.dtype)).c_str(), static_cast<long long>(f.page_size), name(w.device).data());
    std::printf("machine: %s\n", this_machine().str().c_str());
    std::printf("kernel: %s (%s)\n", rep.kernel.c_str(), rep.backend.c_str());
    std::printf("time: median %.4f ms, min %.4f ms of %d runs after %d warm-up (one step: append + attention)\n", med,
                ms.front(), f.reps, f.warmup);
    std::printf("bandwidth: %.1f GB/s (KV bytes read %.3g MB / median time)\n", gbs, kv_bytes / 1e6);
    std::printf("check vs the fp64 oracle: out %s; appended cache rows %s\n", f.check ? verdict.str().c_str() : "skipped",
                f.check ? (cache_check.empty() ? "PASS" : cache_check.c_str()) : "skipped");
  }
  if (!ok) throw CommandFailed{1};
}

}  // namespace flatattn::cli
