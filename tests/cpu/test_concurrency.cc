// The CPU engine from 8 host threads at once (each its own shape, dtype, thread count and features)
// gives the same bits as serial calls (issue 20, item 4): its workspaces and OpenMP teams are per call,
// and its backward is bitwise reproducible by construction (src/cpu/backward.cc).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "tests/cpu/cpu_check.h"

using namespace flatattn;
using namespace flatattn::testing;

namespace {

constexpr int kThreads = 8, kRounds = 3;

/// Eight different problems: f32/f16/bf16, batched and varlen (with empty sequences), causal, windows,
/// GQA/MQA, softcap, the three dataflows, odd head dims, strided views, 1, 2 or all hardware threads.
std::vector<Case> cases() {
  std::vector<Case> v;
  for (int i = 0; i < kThreads; ++i) {
    Case c;
    c.dtype = i % 3 == 0 ? DType::f32 : i % 3 == 1 ? DType::f16 : DType::bf16;
    c.batch = 1 + i % 3;
    c.nq = 13 + 19 * i;
    c.nk = 29 + 11 * i;
    c.hq = i % 2 == 0 ? 4 : 2;
    c.hkv = i % 4 == 0 ? 1 : 2;
    c.d = i == 5 ? 37 : i == 3 ? 96 : 32;
    c.strided = i == 6;
    c.options.return_lse = true;
    c.options.causal = i % 2 == 1;
    c.options.deterministic = i == 4;
    c.options.num_threads = i % 3;  // 0: all hardware threads
    c.options.dataflow = i == 1 ? Dataflow::flat : i == 3 ? Dataflow::flash : Dataflow::automatic;
    if (i == 4) c.options.window.left = 20, c.options.window.right = 6;
    if (i == 7) c.options.softcap = 30.f;
    if (i == 2 || i == 6) {  // varlen with an empty sequence on each side
      c.varlen = true;
      c.batch += 1;
      for (std::int64_t b = 0; b < c.batch; ++b) {
        c.seqlens_q.push_back(static_cast<std::int32_t>((b * 37 + i) % 60));
        c.seqlens_k.push_back(static_cast<std::int32_t>((b * 23 + 5) % 50));
      }
      (i == 2 ? c.seqlens_q.front() : c.seqlens_k.back()) = 0;  // make_case sets nq/nk to the longest
    }
    v.push_back(c);
  }
  return v;
}

/// out, lse, dq, dk, dv of one forward + backward of case c from `seed`, storage bytes (padding included).
std::vector<std::vector<unsigned char>> run(const Case& c, std::uint64_t seed) {
  CaseTensors t = make_case(c, seed, true);
  run_forward(t, c.options);
  run_backward(t, c.options);
  EXPECT_EQ(t.out.count_nonfinite() + t.dk.count_nonfinite() + t.dv.count_nonfinite(), 0) << c.name();  // computed
  std::vector<std::vector<unsigned char>> r;
  for (const HostTensor* h : {&t.out, &t.lse, &t.dq, &t.dk, &t.dv}) r.emplace_back(h->storage.begin(), h->storage.end());
  return r;
}

}  // namespace

TEST(CpuConcurrency, EightThreadsMatchSerialBitwise) {
  Seeded s;
  const std::vector<Case> cs = cases();
  std::vector<std::vector<std::vector<unsigned char>>> serial;
  for (const Case& c : cs) serial.push_back(run(c, s.seed));
  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::string> what(kThreads);
  std::vector<std::thread> pool;
  for (int th = 0; th < kThreads; ++th) {
    pool.emplace_back([&, th] {
      for (int round = 0; round < kRounds; ++round) {
        const std::size_t i = static_cast<std::size_t>(th + round) % cs.size();
        try {
          if (run(cs[i], s.seed) != serial[i]) {
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
  EXPECT_EQ(errors.load(), 0) << all << s.trace();
  EXPECT_EQ(mismatches.load(), 0) << "concurrent results differ from serial ones: " << all << s.trace();
}
