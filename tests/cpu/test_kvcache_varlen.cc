// Paged prefill on the CPU engine: forward_kvcache with varlen queries (KvCacheArgs::cu_seqlens_q, q packed
// (total_q, Hq, D), include/flatattn/kvcache.h) against the fp64 oracle under the project's rule, fresh
// random inputs: ragged Nq_b including 0 and 1, page sizes 1/16/256, shuffled pages, causal aligned to each
// sequence's cache end, windows, GQA/MQA, softcap, ALiBi, sinks, leftpad, contiguous caches, split counts,
// max_seqlen_q = 0 (total_q); and the varlen form equals the batched one bit for bit when every Nq_b is
// equal. Unread cache rows hold NaN and out/lse are poisoned (kv_case.h): a stray read or a row left
// unwritten fails.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "flatattn/flatattn.h"
#include "src/check/case.h"
#include "src/check/kv_check.h"
#include "tests/cpu/cpu_check.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

void expect_pass(const KvCase& c, std::mt19937_64& rng) { expect_kv_pass(c, rng, "_varlen"); }

/// Chunked prefill of a GQA model: B = 5 sequences with Nq_b = {7, 0, 1, 33, 12} new query tokens against
/// caches of {40, 5, 0, 33, 150} keys (the chunk's own keys already appended).
KvCase base(DType dt = DType::f32) {
  KvCase c;
  c.dtype = dt;
  c.batch = 5;
  c.nq = 1;
  c.nnew = 0;
  c.hq = 8;
  c.hkv = 2;
  c.d = 32;
  c.q_lens = {7, 0, 1, 33, 12};
  c.seqlens = {40, 5, 0, 33, 150};
  c.options.return_lse = true;
  c.options.causal = true;
  return c;
}

}  // namespace

TEST(KvCacheVarlenCpu, PageSizesMasksDtypes) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (std::int64_t ps : {1, 16, 256})
      for (int mask = 0; mask < 4; ++mask) {
        KvCase c = base(dt);
        c.page_size = ps;
        c.options.causal = mask == 1;
        if (mask == 2) c.options.window = {8, 0};
        if (mask == 3) c.options.window = {16, 4};
        expect_pass(c, s.rng);
      }
}

TEST(KvCacheVarlenCpu, RaggedLengthsAndLayouts) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  const std::vector<std::vector<std::int32_t>> lens = {{0, 0, 0}, {1, 1, 1}, {0, 1, 64}, {64, 3, 0}, {5, 17, 2}};
  for (const auto& ql : lens)
    for (bool paged : {true, false})
      for (bool shuffled : {true, false}) {
        KvCase c = base(DType::bf16);
        c.batch = 3;
        c.q_lens = ql;
        c.seqlens.clear();  // random in [0, max_context]
        c.max_context = 200;
        c.paged = paged;
        c.batch_idx = !paged;
        c.shuffle_pages = shuffled;
        c.leftpad = shuffled;
        expect_pass(c, s.rng);
      }
}

TEST(KvCacheVarlenCpu, GqaFeaturesSplits) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (auto [hq, hkv] : {std::pair{8, 8}, std::pair{8, 1}, std::pair{12, 4}})
    for (int feat = 0; feat < 5; ++feat) {
      KvCase c = base(DType::f16);
      c.hq = hq;
      c.hkv = hkv;
      if (feat == 1) c.options.softcap = 20.f;
      if (feat == 2) c.alibi = 2;
      if (feat == 3) c.sinks = true;
      if (feat == 4) c.options.window = {20, -1};
      c.num_splits = feat % 3 == 0 ? 0 : feat + 1;
      expect_pass(c, s.rng);
    }
  for (int splits : {1, 2, 7, 40}) {
    KvCase c = base(DType::f32);
    c.num_splits = splits;
    c.share_pages = true;
    expect_pass(c, s.rng);
  }
}

TEST(KvCacheVarlenCpu, MaxSeqlenZeroMeansTotal) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  KvCase c = base(DType::bf16);
  c.max_seqlen_q = 0;
  expect_pass(c, s.rng);
  c.max_seqlen_q = 1000;  // above total_q: a bound, clamped to total_q
  expect_pass(c, s.rng);
  c.options.return_lse = false;
  expect_pass(c, s.rng);
}

TEST(KvCacheVarlenCpu, RandomSweep) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(s.rng); };
  for (int n = 0; n < 30; ++n) {
    KvCase c = base(std::array{DType::f32, DType::f16, DType::bf16}[n % 3]);
    c.batch = uni(1, 6);
    c.q_lens.clear();
    for (int b = 0; b < c.batch; ++b) c.q_lens.push_back(uni(0, 3) == 0 ? uni(0, 1) : uni(0, 80));
    c.seqlens.clear();
    c.max_context = 300;
    c.page_size = std::array{1, 3, 16, 64, 256}[uni(0, 4)];
    c.hkv = std::array{1, 2, 4}[uni(0, 2)];
    c.hq = c.hkv * uni(1, 4);
    c.d = std::array{16, 32, 64}[uni(0, 2)];
    c.options.causal = uni(0, 1) == 1;
    if (uni(0, 3) == 0) c.options.window = {uni(0, 40), c.options.causal ? uni(-1, 0) : uni(-1, 8)};
    c.leftpad = uni(0, 3) == 0;
    c.num_splits = uni(0, 1) ? 0 : uni(1, 6);
    expect_pass(c, s.rng);
  }
}

TEST(KvCacheVarlenCpu, EqualLengthsMatchBatchedBitForBit) {
  // Varlen with Nq_b = Nq for every b is the batched call on the same bytes: out and lse identical.
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (bool causal : {true, false}) {
    KvCase c = base(DType::bf16);
    c.batch = 3;
    c.q_lens.clear();
    c.nq = 9;
    c.seqlens = {9, 40, 70};
    c.options.causal = causal;
    KvCaseTensors bt = make_kv_case(c, s.rng);
    forward_kvcache(bt.args(), c.options);
    KvCaseTensors vt = bt;
    vt.out.poison();
    vt.lse.poison();
    HostTensor cu = HostTensor::make(DType::i32, {c.batch + 1});
    for (std::int64_t b = 0; b <= c.batch; ++b) static_cast<std::int32_t*>(cu.data())[b] = static_cast<std::int32_t>(b * c.nq);
    HostTensor lse = HostTensor::make(DType::f32, {c.hq, c.batch * c.nq});
    lse.poison();
    KvCacheArgs a = vt.args();
    auto pack = [&](TensorView& v) {  // (B, Nq, Hq, D) contiguous as (B * Nq, Hq, D)
      v = TensorView::contiguous(v.data, v.dtype, {c.batch * c.nq, c.hq, c.d});
    };
    pack(a.q);
    pack(a.out);
    a.lse = lse.view();
    a.cu_seqlens_q = cu.view();
    a.max_seqlen_q = c.nq;
    const Report r = forward_kvcache(a, c.options);
    EXPECT_NE(r.kernel.find("_varlen"), std::string::npos) << r.kernel;
    EXPECT_EQ(std::memcmp(vt.out.data(), bt.out.data(), bt.out.bytes()), 0) << "out differs from the batched call";
    int bad = 0;
    const float* lb = static_cast<const float*>(bt.lse.data());
    const float* lv = static_cast<const float*>(lse.data());
    for (std::int64_t b = 0; b < c.batch; ++b)
      for (std::int64_t h = 0; h < c.hq; ++h)
        for (std::int64_t i = 0; i < c.nq; ++i) {
          const float x = lb[(b * c.hq + h) * c.nq + i], y = lv[h * c.batch * c.nq + b * c.nq + i];
          bad += std::memcmp(&x, &y, sizeof x) != 0;
        }
    EXPECT_EQ(bad, 0) << "lse entries differ from the batched call";
  }
}
