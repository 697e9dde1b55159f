// The CUDA forward_kvcache (src/cuda/decode/) through the public API against the fp64 oracle
// (src/reference/reference_kvcache.h) under the project's rule (src/check/kv_check.h: out, LSE, and the
// caches: appended rows within 2 ulps of the oracle's, every other byte unchanged). Fresh random inputs per
// run (seed printed); the cache rows no sequence reads hold NaN and out/lse are poisoned (kv_case.h), so a
// stray read or an unwritten output fails. Covers page sizes 1/16/64/256, shuffled and shared pages,
// contiguous caches with cache_batch_idx, cache lengths 0/1/ragged, leftpad, the append with both rotary
// layouts, Nq 1/4/16 and chunked prefill (Nq 100), causal and windows, GQA 32/8 and 64/8, MHA and MQA,
// softcap, ALiBi, sinks, forced split counts 1..many and the planner's, and the LSE; the shared feature table and
// random sweep (src/check/kv_cases.h); cluster-FLAT decoding on sm_90. Adversarial metadata
// (KvCacheCudaMeta) under FLATATTN_CHECK_METADATA=1 and asynchronously: the named Error, the offending
// sequence's outputs and cache rows untouched, the others correct. Paged prefill (KvCacheCudaVarlen):
// varlen queries (cu_seqlens_q) with ragged Nq_b incl. 0 and 1 over paged caches, causal per sequence,
// windows, GQA, splits, cluster-FLAT, and bad offsets refused. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "flatattn/flatattn.h"
#include "src/check/case.h"
#include "src/check/kv_cases.h"
#include "src/check/kv_check.h"
#include "src/cuda/policy/decode_plan.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;

namespace {

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

/// Device mirrors of a case's host tensors (byte for byte: poison and NaN travel too) and the call's views.
class KvDevice {
 public:
  explicit KvDevice(const KvCaseTensors& t) : t_(t) {
    for (const HostTensor* h : host()) {
      void* p = nullptr;
      if (h->bytes() > 0) {
        ok(cudaMalloc(&p, h->bytes()), "cudaMalloc");
        ok(cudaMemcpy(p, h->data(), h->bytes(), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
      }
      ptrs_.push_back(p);
    }
  }
  ~KvDevice() {
    for (void* p : ptrs_) cudaFree(p);
  }
  KvDevice(const KvDevice&) = delete;
  KvDevice& operator=(const KvDevice&) = delete;

  /// The case's arguments with every tensor on device 0.
  [[nodiscard]] KvCacheArgs args() const {
    KvCacheArgs a = t_.args(Device::cuda(0));
    TensorView* views[] = {&a.q, &a.cache.k_cache, &a.cache.v_cache, &a.cache.block_table, &a.cache.cache_seqlens,
                           &a.cache.cache_batch_idx, &a.cache.cache_leftpad, &a.k_new, &a.v_new, &a.rotary_cos,
                           &a.rotary_sin, &a.out, &a.lse, &a.alibi_slopes, &a.sinks, &a.cu_seqlens_q};
    const std::vector<const HostTensor*> hs = host();
    for (TensorView* v : views) {
      if (v->data == nullptr) continue;
      for (std::size_t i = 0; i < hs.size(); ++i)
        if (hs[i]->bytes() > 0 && v->data == hs[i]->data()) v->data = ptrs_[i];
    }
    return a;
  }
  /// Copies out, lse and both caches back into `t` (the same case).
  void to_host(KvCaseTensors& t) const {
    const std::vector<const HostTensor*> hs = host();
    HostTensor* back[] = {&t.out, &t.lse, &t.k_cache, &t.v_cache};
    for (HostTensor* h : back)
      for (std::size_t i = 0; i < hs.size(); ++i)
        if (hs[i] == h && h->bytes() > 0) ok(cudaMemcpy(h->data(), ptrs_[i], h->bytes(), cudaMemcpyDeviceToHost), "D2H");
  }
  /// Overwrites the device copy of host tensor `h` (an int32 metadata tensor of the case) with `values`.
  void set_i32(const HostTensor& h, const std::vector<std::int32_t>& values) const {
    const std::vector<const HostTensor*> hs = host();
    for (std::size_t i = 0; i < hs.size(); ++i)
      if (hs[i] == &h) ok(cudaMemcpy(ptrs_[i], values.data(), values.size() * 4, cudaMemcpyHostToDevice), "H2D");
  }

 private:
  [[nodiscard]] std::vector<const HostTensor*> host() const {
    return {&t_.q,         &t_.k_cache,     &t_.v_cache,    &t_.block_table, &t_.cache_seqlens,
            &t_.cache_batch_idx, &t_.cache_leftpad, &t_.k_new, &t_.v_new,   &t_.rotary_cos,
            &t_.rotary_sin, &t_.out,         &t_.lse,        &t_.alibi,       &t_.sinks,
            &t_.cu_seqlens_q};
  }
  const KvCaseTensors& t_;
  std::vector<void*> ptrs_;
};

Report run_cuda(KvCaseTensors& t) {
  KvDevice dev(t);
  const Report r = forward_kvcache(dev.args(), t.c.options);
  ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  dev.to_host(t);
  return r;
}

/// The same call captured into a CUDA graph on a fresh stream, then replayed once: the append, decode and combine
/// launches (programmatic dependent launches on sm_90, src/cuda/common/pdl.cuh) must record and replay as one step.
Report run_cuda_graph(KvCaseTensors& t) {
  KvDevice dev(t);
  cudaStream_t s = nullptr;
  ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  ok(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  Report r;
  try {
    r = forward_kvcache(dev.args(), t.c.options, Stream{s});
  } catch (...) {
    cudaStreamEndCapture(s, &g);
    if (g != nullptr) cudaGraphDestroy(g);
    cudaStreamDestroy(s);
    throw;
  }
  ok(cudaStreamEndCapture(s, &g), "cudaStreamEndCapture");
  ok(cudaGraphInstantiate(&ge, g, 0), "cudaGraphInstantiate");
  ok(cudaGraphLaunch(ge, s), "cudaGraphLaunch");
  ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  dev.to_host(t);
  return r;
}

struct Seeded {
  std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng{seed};
  [[nodiscard]] std::string trace() const { return "FLATATTN_SEED=" + std::to_string(seed); }
};

void expect_pass(const KvCase& c, std::mt19937_64& rng) {
  const KvVerdict v = check_kvcache(c, rng, run_cuda, /*cuda=*/true);
  EXPECT_TRUE(v.pass()) << c.name() << ": " << v.detail();
  EXPECT_NE(v.kernel.find("decode_"), std::string::npos) << v.kernel;
}

/// Decoding of a GQA model: B = 3, Hq = 8, Hkv = 2, D = 128, one new token appended and queried.
KvCase base(DType dt = DType::bf16) { return kv_base(dt, 128, 300); }

class ScopedCheckMetadata {
 public:
  explicit ScopedCheckMetadata(const char* v) {
    if (const char* old = std::getenv("FLATATTN_CHECK_METADATA")) old_ = old, had_ = true;
    v ? setenv("FLATATTN_CHECK_METADATA", v, 1) : unsetenv("FLATATTN_CHECK_METADATA");
  }
  ~ScopedCheckMetadata() {
    had_ ? setenv("FLATATTN_CHECK_METADATA", old_.c_str(), 1) : unsetenv("FLATATTN_CHECK_METADATA");
  }

 private:
  std::string old_;
  bool had_ = false;
};

}  // namespace

TEST(KvCacheCuda, PageSizes) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::bf16, DType::f16})
    for (std::int64_t ps : {1, 16, 64, 256}) {
      KvCase c = base(dt);
      c.page_size = ps;
      c.max_context = 600;
      expect_pass(c, s.rng);
    }
}

TEST(KvCacheCuda, CacheLengthsAndLayouts) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (bool paged : {true, false})
    for (const std::vector<std::int32_t>& sl : {std::vector<std::int32_t>{0, 0, 0}, std::vector<std::int32_t>{1, 1, 1},
                                                std::vector<std::int32_t>{0, 1, 77}, std::vector<std::int32_t>{130, 3, 64}})
      for (std::int64_t nnew : {0, 1, 3}) {
        KvCase c = base();
        c.paged = paged;
        c.seqlens = sl;
        c.nnew = nnew;
        c.batch_idx = !paged;
        expect_pass(c, s.rng);
      }
}

TEST(KvCacheCuda, SharedShuffledLeftpad) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (std::int64_t ps : {1, 16, 64})
    for (bool shuffle : {false, true})
      for (bool share : {false, true})
        for (bool leftpad : {false, true}) {
          KvCase c = base();
          c.batch = 4;
          c.page_size = ps;
          c.shuffle_pages = shuffle;
          c.share_pages = share;
          c.leftpad = leftpad;
          c.nnew = share ? 0 : 2;  // shared pages are never appended to
          c.nq = 2;
          c.options.causal = true;
          expect_pass(c, s.rng);
        }
  KvCase c = base();
  c.paged = false;
  c.batch_idx = true;
  c.leftpad = true;
  expect_pass(c, s.rng);
}

TEST(KvCacheCuda, AppendWithRotary) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::bf16, DType::f16})
    for (bool interleaved : {false, true})
      for (std::int64_t rd : {64, 128})
        for (bool causal : {false, true}) {
          KvCase c = base(dt);
          c.rotary_dim = rd;
          c.rotary_interleaved = interleaved;
          c.nq = 4;
          c.nnew = 4;
          c.options.causal = causal;
          c.leftpad = causal;
          expect_pass(c, s.rng);
        }
}

// The append and RoPE fused into the decode kernel (src/cuda/decode/new_rows.cuh): the new rows come from k_new into
// the tile that reaches them, so place them across a 64-key tile boundary (62 + 5), fill whole tiles with them (0 +
// 70), put them behind long caches cut by splits, and give the (sequence, kv head) two row blocks (Hq/Hkv = 8,
// Nq = 4: 32 rows), so the CTAs that rotate q are not the writer; per-row page lookup (page 1) and per-tile (64).
TEST(KvCacheCuda, AppendAcrossTilesSplitsAndRowBlocks) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (std::int64_t ps : {1, 16, 64})
    for (int splits : {1, 2, 5})
      for (bool interleaved : {false, true}) {
        KvCase c = base();
        c.batch = 4;
        c.hq = 16;
        c.hkv = 2;
        c.nq = 4;
        c.nnew = 5;
        c.seqlens = {62, 0, 700, 123};
        c.page_size = ps;
        c.num_splits = splits;
        c.rotary_dim = interleaved ? 64 : 128;
        c.rotary_interleaved = interleaved;
        c.options.causal = splits != 2;
        expect_pass(c, s.rng);
        c.nnew = 70;
        c.nq = 3;
        c.seqlens = {0, 60, 190, 5};
        c.rotary_dim = interleaved ? 0 : 96;
        expect_pass(c, s.rng);
      }
}

TEST(KvCacheCuda, SplitCounts) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (int splits : {0, 1, 2, 3, 7, 16, 64, 200}) {
    KvCase c = base();
    c.num_splits = splits;
    c.seqlens = {2500, 0, 700};
    c.page_size = 16;
    expect_pass(c, s.rng);
    c.options.causal = true;
    c.nq = 4;
    c.nnew = 4;
    c.sinks = true;
    expect_pass(c, s.rng);
  }
}

// A decode step captured into a CUDA graph (what serving engines do) and replayed: append with rotary, split-KV
// with the combine, and without splits; judged like an eager call.
TEST(KvCacheCuda, CapturedInAGraph) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (int splits : {0, 1, 8}) {
    KvCase c = base();
    c.num_splits = splits;
    c.seqlens = {2500, 0, 700};
    c.page_size = 16;
    c.rotary_dim = 128;
    c.nq = 1;
    c.nnew = 1;
    c.options.causal = true;
    const KvVerdict v = check_kvcache(c, s.rng, run_cuda_graph, /*cuda=*/true);
    EXPECT_TRUE(v.pass()) << c.name() << " (captured, splits " << splits << "): " << v.detail();
    EXPECT_NE(v.kernel.find("decode_"), std::string::npos) << v.kernel;
  }
}

TEST(KvCacheCuda, QueryLengthsAndMasks) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (std::int64_t nq : {1, 4, 16, 100})
    for (int mask = 0; mask < 4; ++mask)
      for (int splits : {1, 3}) {
        KvCase c = base();
        c.nq = nq;
        c.nnew = nq;  // chunked prefill: the chunk's keys are appended and queried
        c.max_context = 400;
        c.num_splits = splits;
        c.options.causal = mask == 1 || mask == 3;
        if (mask == 2) c.options.window = {37, 5};
        if (mask == 3) c.options.window = {50, -1};
        expect_pass(c, s.rng);
      }
}

TEST(KvCacheCuda, HeadLayouts) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  struct H {
    std::int64_t hq, hkv;
  };
  for (H h : {H{32, 8}, H{64, 8}, H{8, 8}, H{8, 1}})
    for (std::int64_t d : {64, 128})
      for (std::int64_t nq : {1, 4}) {
        KvCase c = base();
        c.batch = 2;
        c.hq = h.hq;
        c.hkv = h.hkv;
        c.d = d;
        c.nq = nq;
        c.nnew = nq;
        c.options.causal = true;
        expect_pass(c, s.rng);
      }
}

TEST(KvCacheCuda, Variants) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (int splits : {1, 4})
    for (int v = 0; v < 4; ++v) {
      KvCase c = base();
      c.nq = 4;
      c.nnew = 2;
      c.num_splits = splits;
      c.options.causal = true;
      if (v == 0) c.options.softcap = 5.f;
      if (v == 1) c.alibi = 1;
      if (v == 2) c.alibi = 2;
      if (v == 3) c.sinks = true;
      expect_pass(c, s.rng);
    }
  KvCase c = base();  // a negative scale is applied before the softmax (no folding)
  c.options.softmax_scale = -0.05f;
  expect_pass(c, s.rng);
}

TEST(KvCacheCuda, UnsupportedHeadDimIsRefused) {
  REQUIRE_GPU();
  Seeded s;
  KvCase c = base();
  c.d = 40;
  KvCaseTensors t = make_kv_case(c, s.rng);
  const KvCaseTensors before = t;
  KvDevice dev(t);
  try {
    forward_kvcache(dev.args(), c.options);
    FAIL() << "D = 40 must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::unsupported);
    EXPECT_NE(std::string(e.what()).find("64, 128 and 256"), std::string::npos) << e.what();
  }
  dev.to_host(t);
  EXPECT_EQ(std::memcmp(t.k_cache.data(), before.k_cache.data(), t.k_cache.bytes()), 0) << "the cache was written";
}

namespace {

/// Sets FLATATTN_DECODE_CLUSTER for one scope (nullptr unsets it).
class ScopedCluster {
 public:
  explicit ScopedCluster(const char* v) { v ? setenv("FLATATTN_DECODE_CLUSTER", v, 1) : unsetenv("FLATATTN_DECODE_CLUSTER"); }
  ~ScopedCluster() { unsetenv("FLATATTN_DECODE_CLUSTER"); }
};

bool sm90_present() {
  int major = 0;
  return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess && major >= 9;
}

}  // namespace

// Cluster-FLAT decoding (FLATATTN_DECODE_CLUSTER=n, sm_90): the same cases as split-KV, against the oracle.
TEST(KvCacheCuda, ClusterFlat) {
  REQUIRE_GPU();
  if (!sm90_present()) GTEST_SKIP() << "cluster-FLAT decoding needs an sm_90 GPU";
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const char* n : {"2", "4", "8"}) {
    ScopedCluster on(n);
    for (std::int64_t ps : {1, 16, 256}) {
      KvCase c = base();
      c.page_size = ps;
      c.seqlens = {1500, 0, 333};
      c.sinks = ps == 16;
      const KvVerdict v = check_kvcache(c, s.rng, run_cuda, true);
      EXPECT_TRUE(v.pass()) << "cluster " << n << " " << c.name() << ": " << v.detail();
      EXPECT_NE(v.kernel.find("_cluster"), std::string::npos) << v.kernel;
    }
    KvCase c = base();
    c.nq = 16;
    c.nnew = 16;
    c.hq = 32;
    c.hkv = 8;
    c.options.causal = true;
    c.rotary_dim = 128;
    c.leftpad = true;
    expect_pass(c, s.rng);
  }
  ScopedCluster alibi("4");
  KvCase c = base();
  c.alibi = 1;
  KvCaseTensors t = make_kv_case(c, s.rng);
  EXPECT_THROW(run_cuda(t), Error) << "cluster-FLAT serves the plain variant only: ALiBi must be refused";
}

// ---- the shared KV-cache feature table and random sweep (src/check/kv_cases.h) --------------------------


namespace {

/// Head dims with CUDA decode kernels; others are refused with an unsupported Error (the cache cannot be
/// padded in place), which the table's cases at such dims must show, with nothing written.
bool cuda_head_dim(std::int64_t d) { return d == 64 || d == 128 || d == 256; }

void expect_refused(const KvCase& c, std::mt19937_64& rng) {
  KvCaseTensors t = make_kv_case(c, rng);
  const KvCaseTensors before = t;
  KvDevice dev(t);
  try {
    forward_kvcache(dev.args(), c.options);
    ADD_FAILURE() << c.name() << ": D = " << c.d << " must be refused on CUDA";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::unsupported) << e.what();
  }
  ok(cudaDeviceSynchronize(), "sync");
  dev.to_host(t);  // the device's cache and outputs, as the refused call left them
  EXPECT_EQ(std::memcmp(t.k_cache.data(), before.k_cache.data(), t.k_cache.bytes()), 0) << c.name() << ": k_cache written";
  EXPECT_EQ(std::memcmp(t.v_cache.data(), before.v_cache.data(), t.v_cache.bytes()), 0) << c.name() << ": v_cache written";
  EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << c.name() << ": out written";
}

}  // namespace

TEST(KvCacheCuda, FeatureTable) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::bf16, DType::f16})
    for (const KvFeature& f : kv_features(dt)) {
      SCOPED_TRACE(f.name);
      if (cuda_head_dim(f.c.d)) {
        expect_pass(f.c, s.rng);
      } else {
        expect_refused(f.c, s.rng);
      }
    }
}

TEST(KvCacheCuda, RandomSweep) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  int ran = 0;
  for (int i = 0; i < 200 && ran < 60; ++i) {
    const KvCase c = kv_random_case(s.rng, i % 2 ? DType::bf16 : DType::f16);
    if (!cuda_head_dim(c.d)) continue;
    ++ran;
    expect_pass(c, s.rng);
  }
  EXPECT_GE(ran, 20) << "the generator gave too few CUDA head dims";
}

// ---- adversarial metadata (issue 20's contract) ---------------------------------------------------------

namespace {

struct BadMeta {
  const char* argument;  ///< the Error's argument
  int kind;              ///< 0 block_table entry, 1 negative block_table, 2 seqlens past capacity, 3 negative seqlens,
                         ///< 4 batch_idx out of range, 5 leftpad > seqlens
};

std::int32_t i32_at(const HostTensor& t, std::int64_t i) { return static_cast<std::int32_t>(t.at(i)); }

/// Sequence 1 of a B = 3 case gets the bad value: the named Error (checking mode: this call; otherwise the
/// next call), sequence 1's out and lse untouched (poisoned), the others written.
void run_bad(const BadMeta& bad, bool checking, std::mt19937_64& rng, int splits = 2) {
  KvCase c = base();
  c.paged = bad.kind != 4;
  c.batch_idx = bad.kind == 4;
  c.leftpad = bad.kind == 5;
  c.seqlens = {100, 90, 40};
  c.page_size = 16;
  c.num_splits = splits;
  KvCaseTensors t = make_kv_case(c, rng);
  const KvCaseTensors before = t;
  KvDevice dev(t);
  switch (bad.kind) {
    case 0:
    case 1: {
      std::vector<std::int32_t> bt(static_cast<const std::int32_t*>(t.block_table.data()),
                                   static_cast<const std::int32_t*>(t.block_table.data()) + t.block_table.numel());
      bt[1 * t.block_table.shape[1] + 2] = bad.kind == 0 ? 1 << 28 : -5;
      dev.set_i32(t.block_table, bt);
      break;
    }
    case 2: dev.set_i32(t.cache_seqlens, {100, 1 << 29, 40}); break;
    case 3: dev.set_i32(t.cache_seqlens, {100, -7, 40}); break;
    // Sequences 0 and 2 keep the cache rows and left pads make_kv_case drew: the rows they would read
    // otherwise are poisoned.
    case 4: dev.set_i32(t.cache_batch_idx, {i32_at(t.cache_batch_idx, 0), 1 << 20, i32_at(t.cache_batch_idx, 2)}); break;
    case 5: dev.set_i32(t.cache_leftpad, {i32_at(t.cache_leftpad, 0), 91, i32_at(t.cache_leftpad, 2)}); break;
    default: break;
  }
  bool threw = false;
  try {
    forward_kvcache(dev.args(), c.options);
    ok(cudaDeviceSynchronize(), "sync");
    if (!checking) forward_kvcache(dev.args(), c.options);  // the next call raises the earlier violation
  } catch (const Error& e) {
    threw = true;
    EXPECT_EQ(e.argument(), bad.argument) << e.what();
  }
  EXPECT_TRUE(threw) << "bad " << bad.argument << " was not reported";
  ok(cudaDeviceSynchronize(), "sync");
  dev.to_host(t);
  // Sequence 1: out and lse still poisoned, its cache rows unchanged (its append skipped).
  const std::int64_t row = c.hq * c.d;
  for (std::int64_t e = 0; e < row; ++e)
    ASSERT_TRUE(std::isnan(t.out.at(1 * c.nq * row + e))) << "out of the refused sequence was written (" << bad.argument << ")";
  for (std::int64_t h = 0; h < c.hq; ++h) ASSERT_TRUE(std::isnan(t.lse.at(1 * c.hq + h))) << "lse of the refused sequence";
  // Sequences 0 and 2 were computed: finite outputs (the message says which case and how many are not).
  const char* cluster = std::getenv("FLATATTN_DECODE_CLUSTER");
  for (std::int64_t b : {0, 2}) {
    std::int64_t bad_out = 0, first = -1;
    for (std::int64_t e = 0; e < row; ++e)
      if (!std::isfinite(t.out.at(b * c.nq * row + e))) bad_out += 1, first = first < 0 ? e : first;
    std::int64_t bad_lse = 0;
    for (std::int64_t h = 0; h < c.hq; ++h) bad_lse += std::isfinite(t.lse.at(b * c.hq + h)) ? 0 : 1;
    EXPECT_EQ(bad_out + bad_lse, 0) << "sequence " << b << " next to bad " << bad.argument << " (kind " << bad.kind
                                    << ", checking " << checking << ", splits " << splits << ", cluster "
                                    << (cluster ? cluster : "off") << "): " << bad_out << " of " << row
                                    << " outputs non-finite (first at element " << first << ", head " << first / c.d
                                    << "), " << bad_lse << " of " << c.hq << " LSEs";
  }
}

}  // namespace

TEST(KvCacheCudaMeta, CheckingModeNamesTheArgument) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  ScopedCheckMetadata on("1");
  for (BadMeta b : {BadMeta{"cache.block_table", 0}, BadMeta{"cache.block_table", 1}, BadMeta{"cache.cache_seqlens", 2},
                    BadMeta{"cache.cache_seqlens", 3}, BadMeta{"cache.cache_batch_idx", 4},
                    BadMeta{"cache.cache_leftpad", 5}})
    run_bad(b, true, s.rng);
}

TEST(KvCacheCudaMeta, AsynchronousReport) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  ScopedCheckMetadata off(nullptr);
  run_bad(BadMeta{"cache.block_table", 0}, false, s.rng);
  run_bad(BadMeta{"cache.cache_seqlens", 2}, false, s.rng);
}

// The memcheck subset (scripts/gpu_session.sh san stage): every adversarial value once, checking mode, and a
// small valid decode with splits, rotary and page size 1.
TEST(KvCacheCudaMeta, SanitizerSet) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  {
    ScopedCheckMetadata on("1");
    for (BadMeta b : {BadMeta{"cache.block_table", 0}, BadMeta{"cache.block_table", 1}, BadMeta{"cache.cache_seqlens", 2},
                      BadMeta{"cache.cache_seqlens", 3}, BadMeta{"cache.cache_batch_idx", 4},
                      BadMeta{"cache.cache_leftpad", 5}})
      run_bad(b, true, s.rng);
  }
  if (sm90_present()) {
    ScopedCheckMetadata on("1");
    ScopedCluster cl("4");
    run_bad(BadMeta{"cache.block_table", 0}, true, s.rng, 0);  // 0: the cluster, not forced splits
  }
  KvCase c = base();
  c.page_size = 1;
  c.rotary_dim = 64;
  c.nq = 4;
  c.nnew = 4;
  c.options.causal = true;
  c.num_splits = 3;
  expect_pass(c, s.rng);
}

// ---- the planner (host only: runs without a GPU) ----------------------------------------------------------


TEST(KvDecodePlan, FillsTheGpuWithoutASecondWave) {
  using flatattn::cuda::DecodeWork;
  using flatattn::cuda::plan_decode_splits;
  DecodeWork w;
  w.sm_count = 132;  // H100 SXM
  w.ctas_per_sm = 2;
  // B = 1, Hkv = 8, context 128k: 8 (sequence, kv head) pairs must be split to fill 264 slots, within one wave.
  w.batch = 1, w.hkv = 8, w.row_blocks = 1, w.keys = 131072;
  int s = plan_decode_splits(w);
  EXPECT_GE(s * 8, 264 * 9 / 10) << s;
  EXPECT_LE(s * 8, 264) << s;
  // Enough CTAs already: no split (no combine, no partials).
  w.batch = 64, w.hkv = 8;
  EXPECT_EQ(plan_decode_splits(w), 1);
  // A short context keeps >= kMinTilesPerSplit key tiles per split.
  w.batch = 1, w.keys = 1024;
  s = plan_decode_splits(w);
  EXPECT_LE(s, 1024 / 64 / flatattn::cuda::kMinTilesPerSplit) << s;
  EXPECT_GE(s, 1);
  // MHA, B = 1, 8k: 32 pairs -> 8 splits (256 CTAs), not 9 (a second wave of 24).
  w.batch = 1, w.hkv = 32, w.keys = 8192;
  EXPECT_EQ(plan_decode_splits(w), 8);
}

// ---- paged prefill: varlen queries over the cache (cu_seqlens_q) -------------------------------------------

namespace {

/// Chunked prefill of a GQA model: Nq_b = {37, 0, 1, 100, 16} over caches of {60, 7, 0, 100, 700} keys.
KvCase varlen_base(DType dt = DType::bf16) {
  KvCase c = base(dt);
  c.batch = 5;
  c.nnew = 0;
  c.q_lens = {37, 0, 1, 100, 16};
  c.seqlens = {60, 7, 0, 100, 700};
  c.options.causal = true;
  return c;
}

void expect_varlen_pass(const KvCase& c, std::mt19937_64& rng) {
  const KvVerdict v = check_kvcache(c, rng, run_cuda, /*cuda=*/true);
  EXPECT_TRUE(v.pass()) << c.name() << ": " << v.detail();
  EXPECT_NE(v.kernel.find("_varlen"), std::string::npos) << v.kernel;
}

}  // namespace

TEST(KvCacheCudaVarlen, PageSizesMasksHeadDims) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (DType dt : {DType::bf16, DType::f16})
    for (std::int64_t ps : {1, 16, 256})
      for (int mask = 0; mask < 3; ++mask)
        for (std::int64_t d : {64, 128}) {
          KvCase c = varlen_base(dt);
          c.page_size = ps;
          c.d = d;
          c.options.causal = mask == 0;
          if (mask == 2) c.options.window = {32, 0};
          expect_varlen_pass(c, s.rng);
        }
}

TEST(KvCacheCudaVarlen, GqaSplitsFeaturesLayouts) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (auto [hq, hkv] : {std::pair{32, 8}, std::pair{8, 8}, std::pair{8, 1}})
    for (int splits : {0, 1, 3, 16}) {
      KvCase c = varlen_base();
      c.hq = hq;
      c.hkv = hkv;
      c.num_splits = splits;
      expect_varlen_pass(c, s.rng);
    }
  for (int feat = 0; feat < 6; ++feat) {
    KvCase c = varlen_base(DType::f16);
    c.options.softcap = feat == 0 ? 30.f : 0.f;
    c.alibi = feat == 1 ? 2 : 0;
    c.sinks = feat == 2;
    c.leftpad = feat == 3;
    c.paged = feat != 4;
    c.batch_idx = feat == 4;
    if (feat == 5) c.max_seqlen_q = 0;  // the bound is total_q
    c.num_splits = feat % 2 ? 4 : 0;
    expect_varlen_pass(c, s.rng);
  }
  for (const std::vector<std::int32_t>& ql : {std::vector<std::int32_t>{0, 0, 0}, std::vector<std::int32_t>{1, 1, 1},
                                              std::vector<std::int32_t>{0, 200, 1}}) {
    KvCase c = varlen_base();
    c.batch = 3;
    c.q_lens = ql;
    c.seqlens = {300, 250, 5};
    expect_varlen_pass(c, s.rng);
  }
}

TEST(KvCacheCudaVarlen, ClusterFlat) {
  REQUIRE_GPU();
  if (!sm90_present()) GTEST_SKIP() << "cluster-FLAT decoding needs an sm_90 GPU";
  Seeded s;
  SCOPED_TRACE(s.trace());
  for (const char* n : {"2", "4"}) {
    ScopedCluster on(n);
    KvCase c = varlen_base();
    const KvVerdict v = check_kvcache(c, s.rng, run_cuda, /*cuda=*/true);
    EXPECT_TRUE(v.pass()) << c.name() << ": " << v.detail();
    EXPECT_NE(v.kernel.find("_cluster"), std::string::npos) << v.kernel;
  }
}

// Bad offsets on the device: checking mode names cu_seqlens_q / max_seqlen_q; the refused sequence's rows
// stay poisoned, every other sequence is computed.
TEST(KvCacheCudaVarlen, BadOffsetsAreRefused) {
  REQUIRE_GPU();
  Seeded s;
  SCOPED_TRACE(s.trace());
  ScopedCheckMetadata on("1");
  struct Bad {
    std::vector<std::int32_t> cu;
    const char* argument;
    std::int64_t max_seqlen_q;
  };
  // Valid offsets are {0, 4, 9, 12} (Nq_b = 4, 5, 3, total_q 12).
  for (const Bad& bad : {Bad{{0, 4, 99, 12}, "cu_seqlens_q", 5}, Bad{{0, 4, 3, 12}, "cu_seqlens_q", 5},
                         Bad{{0, 4, 9, 12}, "max_seqlen_q", 4}})
    for (int splits : {1, 3}) {
      KvCase c = varlen_base();
      c.batch = 3;
      c.q_lens = {4, 5, 3};
      c.seqlens = {50, 60, 70};
      c.num_splits = splits;
      c.max_seqlen_q = bad.max_seqlen_q;
      KvCaseTensors t = make_kv_case(c, s.rng);
      KvDevice dev(t);
      dev.set_i32(t.cu_seqlens_q, bad.cu);
      bool threw = false;
      try {
        forward_kvcache(dev.args(), c.options);
      } catch (const Error& e) {
        threw = true;
        EXPECT_EQ(e.argument(), bad.argument) << e.what();
      }
      EXPECT_TRUE(threw) << "bad " << bad.argument << " was not reported";
      ok(cudaDeviceSynchronize(), "sync");
      dev.to_host(t);
      const std::int64_t row = c.hq * c.d;
      // Sequence 0 (rows 0..3) is valid in every case; rows 4..8 belong to the refused sequence 1 (bad
      // offsets or a length above max_seqlen_q) and stay poisoned.
      for (std::int64_t e = 0; e < 4 * row; ++e) ASSERT_TRUE(std::isfinite(t.out.at(e))) << "sequence 0";
      for (std::int64_t e = 4 * row; e < 9 * row; ++e)
        ASSERT_TRUE(std::isnan(t.out.at(e))) << "rows of the refused sequence were written (" << bad.argument << ")";
    }
}
