// The CPU engine's forward_kvcache (src/cpu/kvcache.cc) against the fp64 oracle (src/reference/
// reference_kvcache.h) under the project's rule, with fresh random inputs: page sizes 1..256, shuffled and
// shared pages, contiguous caches with cache_batch_idx, empty/one-token/ragged caches, leftpad, the append
// with both rotary layouts, decode and chunked prefill with causal and windows, GQA/MQA, softcap, ALiBi,
// sinks, split counts 1..many and the LSE. Unread cache rows hold NaN (kv_case.h): a stray read fails.
#include <gtest/gtest.h>

#include <array>
#include <random>

#include "flatattn/flatattn.h"
#include "src/check/case.h"
#include "src/check/kv_cases.h"
#include "src/check/kv_check.h"
#include "tests/cpu/cpu_check.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

void expect_pass(const KvCase& c, std::mt19937_64& rng) { expect_kv_pass(c, rng, "cpu_kvcache"); }

KvCase base(DType dt = DType::f32) { return kv_base(dt, 32, 150); }

}  // namespace

TEST(KvCacheCpu, PageSizes) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (std::int64_t ps : {1, 16, 64, 256}) {
      KvCase c = base(dt);
      c.page_size = ps;
      c.max_context = 300;
      expect_pass(c, s.rng);
    }
}

TEST(KvCacheCpu, CacheLengthsAndLayouts) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (bool paged : {true, false})
    for (const std::vector<std::int32_t>& sl : {std::vector<std::int32_t>{0, 0, 0}, std::vector<std::int32_t>{1, 1, 1},
                                                std::vector<std::int32_t>{0, 1, 77}, std::vector<std::int32_t>{130, 3, 64}})
      for (std::int64_t nnew : {0, 1, 3}) {
        KvCase c = base(DType::bf16);
        c.paged = paged;
        c.seqlens = sl;
        c.nnew = nnew;
        c.batch_idx = !paged;
        expect_pass(c, s.rng);
      }
}

TEST(KvCacheCpu, SharedPagesAndUnshuffled) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (bool shuffle : {false, true}) {
    KvCase c = base(DType::f16);
    c.batch = 4;
    c.seqlens = {100, 70, 33, 100};
    c.share_pages = true;
    c.shuffle_pages = shuffle;
    c.nnew = 2;
    c.nq = 2;
    c.options.causal = true;
    expect_pass(c, s.rng);
  }
}

TEST(KvCacheCpu, Leftpad) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (bool paged : {true, false})
    for (bool causal : {false, true}) {
      KvCase c = base(DType::f32);
      c.paged = paged;
      c.leftpad = true;
      c.nq = 3;
      c.nnew = 3;
      c.options.causal = causal;
      c.rotary_dim = 16;
      c.alibi = 2;
      expect_pass(c, s.rng);
    }
}

TEST(KvCacheCpu, Rotary) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::f32, DType::bf16})
    for (bool interleaved : {true, false})
      for (std::int64_t rd : {32, 16, 2})
        for (bool causal : {false, true}) {
          KvCase c = base(dt);
          c.rotary_dim = rd;
          c.rotary_interleaved = interleaved;
          c.nq = 4;
          c.nnew = 4;
          c.options.causal = causal;
          expect_pass(c, s.rng);
        }
}

TEST(KvCacheCpu, QueryLengthsCausalWindows) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (std::int64_t nq : {1, 2, 5, 16, 37})
    for (int mask = 0; mask < 4; ++mask) {
      KvCase c = base(DType::bf16);
      c.nq = nq;
      c.nnew = nq == 37 ? 37 : (nq % 2 ? nq : 1);  // chunked prefill appends its queries' keys; decode may not
      c.seqlens = {0, 20, 150};
      if (mask == 1) c.options.causal = true;
      if (mask == 2) c.options.window = {8, 0};
      if (mask == 3) c.options.causal = true, c.options.window = {40, -1};
      c.rotary_dim = mask % 2 ? 32 : 0;
      expect_pass(c, s.rng);
    }
}

TEST(KvCacheCpu, GqaMqaAndFeatures) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  struct H { std::int64_t hq, hkv; };
  for (H h : {H{4, 4}, H{8, 2}, H{6, 1}})
    for (int feat = 0; feat < 4; ++feat) {
      KvCase c = base(DType::bf16);
      c.hq = h.hq;
      c.hkv = h.hkv;
      c.nq = 2;
      c.nnew = 2;
      c.options.causal = feat != 0;
      if (feat == 1) c.options.softcap = 5.f;
      if (feat == 2) c.alibi = 1;
      if (feat == 3) c.sinks = true, c.options.softcap = 20.f, c.seqlens = {0, 5, 90};
      expect_pass(c, s.rng);
    }
}

TEST(KvCacheCpu, SplitCounts) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (int splits : {0, 1, 2, 3, 7, 16, 64}) {
    KvCase c = base(DType::f32);
    c.batch = 2;
    c.hq = 4;
    c.hkv = 1;
    c.seqlens = {600, 9};
    c.num_splits = splits;
    c.nq = 3;
    c.nnew = 3;
    c.options.causal = splits % 2 == 1;
    c.sinks = splits == 7;
    c.page_size = 16;
    expect_pass(c, s.rng);
  }
}

TEST(KvCacheCpu, WithoutLseAndStridedThreads) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (int threads : {1, 3}) {
    KvCase c = base(DType::f16);
    c.options.return_lse = false;
    c.options.num_threads = threads;
    expect_pass(c, s.rng);
  }
}

TEST(KvCacheCpu, FeatureTable) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (const KvFeature& f : kv_features(dt)) {
      SCOPED_TRACE(f.name);
      expect_pass(f.c, s.rng);
    }
}

TEST(KvCacheCpu, RandomSweep) {
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (int n = 0; n < 40; ++n) {
    const DType dt = std::array{DType::f32, DType::f16, DType::bf16}[n % 3];
    expect_pass(kv_random_case(s.rng, dt), s.rng);
  }
}

TEST(KvCacheCpu, SequentialDecodeMatchesOneShot) {
  // Appending token by token (advancing cache_seqlens) builds the same cache as one call appending all.
  Seeded s;
  SCOPED_TRACE(s.trace());
  KvCase c = base(DType::f32);
  c.batch = 2;
  c.nq = 4;
  c.nnew = 4;
  c.seqlens = {10, 3};
  c.rotary_dim = 32;
  c.options.causal = true;
  const KvCaseTensors t0 = make_kv_case(c, s.rng);
  KvCaseTensors all = t0, step = t0;
  forward_kvcache(all.args(), c.options);
  for (std::int64_t j = 0; j < 4; ++j) {
    KvCacheArgs a = step.args();
    auto narrow = [&](TensorView& v) {
      v.data = static_cast<char*>(v.data) + j * v.stride[1] * static_cast<std::int64_t>(element_size(v.dtype));
      v.shape[1] = 1;
    };
    narrow(a.q);
    narrow(a.k_new);
    narrow(a.v_new);
    narrow(a.out);
    a.lse = {};
    Options o = c.options;
    o.return_lse = false;
    forward_kvcache(a, o);
    for (std::int64_t b = 0; b < c.batch; ++b) static_cast<std::int32_t*>(step.cache_seqlens.data())[b] += 1;
  }
  EXPECT_EQ(compare_caches(step, all, t0, 0.0), "");
  const Verdict v = judge(step.out, all.out, nullptr, DType::f32, 1e-5);
  EXPECT_TRUE(v.pass) << v.detail();
}
