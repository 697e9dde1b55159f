// forward/backward from 8 host threads, each on its own stream with its own shape, give the same bits as
// serial calls (issue 20, item 4): the dispatch caches (family, sm90 switch, planner, registry, device
// properties, metadata word) are shared and must stay correct under contention. The backward's dQ is
// compared in deterministic mode only (the default mode sums dQ with atomics: its order may differ).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::testing;

namespace {

constexpr int kThreads = 8, kRounds = 3;

/// Eight different problems: batched and varlen, f16 and bf16, causal, windows, GQA/MQA, softcap,
/// automatic / Flash / FLAT, an odd head dim (staged) and a strided layout.
std::vector<Case> cases() {
  std::vector<Case> v;
  for (int i = 0; i < kThreads; ++i) {
    Case c;
    c.dtype = i % 3 == 2 ? DType::bf16 : DType::f16;
    c.batch = 1 + i % 3;
    c.nq = 33 + 29 * i;
    c.nk = 47 + 17 * i;
    c.hq = i % 2 == 0 ? 4 : 2;
    c.hkv = i % 4 == 0 ? 1 : 2;
    c.d = i == 5 ? 59 : 64;
    c.strided = i == 6;
    c.options.return_lse = true;
    c.options.causal = i % 2 == 1;
    c.options.deterministic = i % 2 == 0;
    c.options.dataflow = i == 3 ? Dataflow::flash : Dataflow::automatic;
    if (i == 4) c.options.window.left = 24, c.options.window.right = 8;
    if (i == 7) c.options.softcap = 30.f;
    if (i == 2 || i == 6) {  // varlen with an empty sequence on each side
      c.varlen = true;
      c.batch += 1;
      for (std::int64_t b = 0; b < c.batch; ++b) {
        c.seqlens_q.push_back(static_cast<std::int32_t>((b * 37 + i) % 90));
        c.seqlens_k.push_back(static_cast<std::int32_t>((b * 23 + 5) % 70));
      }
      (i == 2 ? c.seqlens_q.front() : c.seqlens_k.back()) = 0;  // make_case sets nq/nk to the longest
    }
    v.push_back(c);
  }
  return v;
}

/// The outputs of one forward + backward of case c from `seed`: out, lse, dk, dv (and dq when deterministic).
std::vector<std::vector<unsigned char>> run(const Case& c, std::uint64_t seed) {
  CaseTensors t = make_case(c, seed, true);
  run_on_gpu(t, true);
  run_backward_on_gpu(t, true);
  EXPECT_EQ(t.out.count_nonfinite() + t.dk.count_nonfinite() + t.dv.count_nonfinite(), 0) << c.name();  // computed
  std::vector<std::vector<unsigned char>> r;
  for (const HostTensor* h : {&t.out, &t.lse, &t.dk, &t.dv}) r.emplace_back(h->storage.begin(), h->storage.end());
  if (c.options.deterministic) r.emplace_back(t.dq.storage.begin(), t.dq.storage.end());
  return r;
}

}  // namespace

TEST(CudaConcurrency, EightThreadsMatchSerialBitwise) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaConcurrency");
  std::vector<Case> cs;
  for (const Case& c : cases()) {
    if (!dtype_runs(c.dtype)) continue;
    try {
      (void)run(c, seed);
    } catch (const Error& e) {
      if (e.kind() == Error::Kind::unsupported) continue;  // an instance this build does not have
      throw;
    }
    cs.push_back(c);
  }
  if (cs.empty()) GTEST_SKIP() << "no case served by this build";
  std::vector<std::vector<std::vector<unsigned char>>> serial;
  for (const Case& c : cs) serial.push_back(run(c, seed));
  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::string> what(kThreads);
  std::vector<std::thread> pool;
  for (int th = 0; th < kThreads; ++th) {
    pool.emplace_back([&, th] {
      for (int round = 0; round < kRounds; ++round) {
        const std::size_t i = static_cast<std::size_t>(th + round) % cs.size();
        try {
          if (run(cs[i], seed) != serial[i]) {
            ++mismatches;
            what[static_cast<std::size_t>(th)] = cs[i].name();
          }
        } catch (const std::exception& e) {
          ++errors;
          what[static_cast<std::size_t>(th)] = e.what();
        }
      }
    });
  }
  for (std::thread& t : pool) t.join();
  std::string all;
  for (const std::string& w : what) all += w.empty() ? "" : w + "; ";
  EXPECT_EQ(errors.load(), 0) << all;
  EXPECT_EQ(mismatches.load(), 0) << "concurrent results differ from serial ones: " << all;
}
