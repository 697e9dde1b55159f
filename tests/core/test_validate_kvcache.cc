// Every forward_kvcache validation error (src/core/validate_kvcache.cc): it names the argument and the
// value, states a limit and a fix, and nothing is written: out, lse AND the cache (the append writes it)
// stay byte-identical.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <limits>

#include "flatattn/flatattn.h"
#include "flatattn/kvcache.h"
#include "src/check/case.h"
#include "src/check/kv_case.h"

using namespace flatattn;
using namespace flatattn::check;

namespace {

struct Fx {
  std::mt19937_64 rng{fresh_seed()};
  KvCaseTensors t;
  explicit Fx(bool paged = true, std::int64_t nnew = 2) {
    KvCase c;
    c.batch = 3;
    c.nq = 2;
    c.nnew = nnew;
    c.hq = 4;
    c.hkv = 2;
    c.d = 16;
    c.paged = paged;
    c.page_size = 4;
    c.seqlens = {5, 0, 9};
    c.rotary_dim = 8;
    c.leftpad = true;
    c.options.return_lse = true;
    c.options.causal = true;
    t = make_kv_case(c, rng);
  }
};

bool same_bytes(const HostTensor& a, const HostTensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

/// Calls forward_kvcache on fx's args after `edit`, expects an Error naming `argument` whose message holds
/// `value_part`, and checks out, lse and both caches unchanged.
void expect_error(Fx& fx, const std::string& argument, const std::string& value_part,
                  const std::function<void(KvCacheArgs&, Options&)>& edit,
                  Error::Kind kind = Error::Kind::invalid_argument) {
  const KvCaseTensors before = fx.t;
  KvCacheArgs a = fx.t.args();
  Options o = fx.t.c.options;
  edit(a, o);
  try {
    forward_kvcache(a, o);
    ADD_FAILURE() << "expected an error naming '" << argument << "'";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(e.argument(), argument) << m;
    EXPECT_EQ(e.kind(), kind) << m;
    EXPECT_NE(m.find(value_part), std::string::npos) << "value '" << value_part << "' missing: " << m;
    EXPECT_FALSE(e.limit().empty()) << m;
    EXPECT_FALSE(e.fix().empty()) << m;
  }
  EXPECT_TRUE(same_bytes(before.out, fx.t.out)) << "out was written (" << argument << ")";
  EXPECT_TRUE(same_bytes(before.lse, fx.t.lse)) << "lse was written (" << argument << ")";
  EXPECT_TRUE(same_bytes(before.k_cache, fx.t.k_cache)) << "k_cache was written (" << argument << ")";
  EXPECT_TRUE(same_bytes(before.v_cache, fx.t.v_cache)) << "v_cache was written (" << argument << ")";
}

std::int32_t* i32(HostTensor& t) { return static_cast<std::int32_t*>(t.data()); }

}  // namespace

TEST(ValidateKvCache, Shapes) {
  Fx fx;
  expect_error(fx, "q", "rank 3", [](KvCacheArgs& a, Options&) { a.q.rank = 3; });
  expect_error(fx, "q", "Nq = 0", [](KvCacheArgs& a, Options&) { a.q.shape[1] = 0; a.out.shape[1] = 0; });
  expect_error(fx, "q", "dtype i32", [](KvCacheArgs& a, Options&) { a.q.dtype = DType::i32; });
  expect_error(fx, "k_cache", "dtype f16", [](KvCacheArgs& a, Options&) { a.cache.k_cache.dtype = DType::f16; });
  expect_error(fx, "k_cache", "D = 8", [](KvCacheArgs& a, Options&) {
    a.cache.k_cache.shape[3] = 8;
    a.cache.v_cache.shape[3] = 8;
  });
  expect_error(fx, "k_cache", "Hkv = 3", [](KvCacheArgs& a, Options&) {
    a.cache.k_cache.shape[2] = 3;
    a.cache.v_cache.shape[2] = 3;
  });
  expect_error(fx, "v_cache", "shape", [](KvCacheArgs& a, Options&) { a.cache.v_cache.shape[0] -= 1; });
  expect_error(fx, "k_cache", "page_size (shape[1]) = 0", [](KvCacheArgs& a, Options&) {
    a.cache.k_cache.shape[1] = 0;
    a.cache.v_cache.shape[1] = 0;
  });
  expect_error(fx, "k_cache", "strides", [](KvCacheArgs& a, Options&) { a.cache.k_cache.stride[3] = 2; });
  expect_error(fx, "v_cache", "device cuda", [](KvCacheArgs& a, Options&) { a.cache.v_cache.device = Device::cuda(); });
  expect_error(fx, "k_new", "shape", [](KvCacheArgs& a, Options&) { a.k_new.shape[2] = 4; });
  expect_error(fx, "v_new", "shape", [](KvCacheArgs& a, Options&) { a.v_new.shape[1] = 1; });
  expect_error(fx, "v_new", "absent", [](KvCacheArgs& a, Options&) { a.v_new = {}; });
  expect_error(fx, "out", "shape", [](KvCacheArgs& a, Options&) { a.out.shape[1] = 3; });
  expect_error(fx, "out", "dtype bf16", [](KvCacheArgs& a, Options&) { a.out.dtype = DType::bf16; });
  expect_error(fx, "lse", "shape", [](KvCacheArgs& a, Options&) { a.lse.shape[2] = 7; });
  expect_error(fx, "lse", "given", [](KvCacheArgs&, Options& o) { o.return_lse = false; });
}

TEST(ValidateKvCache, Metadata) {
  Fx fx;
  expect_error(fx, "cache_seqlens", "absent", [](KvCacheArgs& a, Options&) { a.cache.cache_seqlens = {}; });
  expect_error(fx, "cache_seqlens", "dtype f32", [](KvCacheArgs& a, Options&) { a.cache.cache_seqlens.dtype = DType::f32; });
  expect_error(fx, "cache_seqlens", "shape (2)", [](KvCacheArgs& a, Options&) { a.cache.cache_seqlens.shape[0] = 2; });
  expect_error(fx, "block_table", "dtype f32", [](KvCacheArgs& a, Options&) { a.cache.block_table.dtype = DType::f32; });
  expect_error(fx, "block_table", "rank 1", [](KvCacheArgs& a, Options&) { a.cache.block_table.rank = 1; });
  expect_error(fx, "block_table", "shape", [](KvCacheArgs& a, Options&) { a.cache.block_table.shape[0] = 4; });
  expect_error(fx, "cache_batch_idx", "given with a block_table",
               [&](KvCacheArgs& a, Options&) { a.cache.cache_batch_idx = fx.t.cache_seqlens.view(); });
  expect_error(fx, "cache_leftpad", "dtype f32", [](KvCacheArgs& a, Options&) { a.cache.cache_leftpad.dtype = DType::f32; });
}

TEST(ValidateKvCache, MetadataValues) {
  {  // a page index out of range (the first page of sequence 0), then a negative one
    Fx fx;
    const std::int32_t pages = static_cast<std::int32_t>(fx.t.k_cache.shape[0]);
    i32(fx.t.cache_leftpad)[0] = 0;  // page 0 is read
    i32(fx.t.block_table)[0] = pages;
    expect_error(fx, "block_table", "block_table[0, 0] = " + std::to_string(pages), [](KvCacheArgs&, Options&) {});
    i32(fx.t.block_table)[0] = -1;
    expect_error(fx, "block_table", "= -1", [](KvCacheArgs&, Options&) {});
  }
  {  // the append's target page of sequence 1 (empty cache) out of range
    Fx fx;
    i32(fx.t.block_table)[fx.t.block_table.shape[1]] = -7;
    expect_error(fx, "block_table", "block_table[1, 0] = -7", [](KvCacheArgs&, Options&) {});
  }
  {  // cache_seqlens beyond the capacity, and negative
    Fx fx;
    const std::int64_t cap = fx.t.block_table.shape[1] * fx.t.page_size();
    i32(fx.t.cache_seqlens)[2] = static_cast<std::int32_t>(cap - 1);
    expect_error(fx, "cache_seqlens", "cache_seqlens[2] = " + std::to_string(cap - 1), [](KvCacheArgs&, Options&) {});
    i32(fx.t.cache_seqlens)[2] = -3;
    expect_error(fx, "cache_seqlens", "cache_seqlens[2] = -3", [](KvCacheArgs&, Options&) {});
  }
  {  // leftpad beyond the sequence
    Fx fx;
    i32(fx.t.cache_leftpad)[0] = 6;
    expect_error(fx, "cache_leftpad", "cache_leftpad[0] = 6", [](KvCacheArgs&, Options&) {});
  }
  {  // two sequences append into the same page
    Fx fx;
    const std::int64_t mp = fx.t.block_table.shape[1];
    i32(fx.t.block_table)[1 * mp + 0] = i32(fx.t.block_table)[0 * mp + 1];  // seq 1's page 0 = seq 0's page 1 (rows 4..7)
    i32(fx.t.cache_seqlens)[1] = 1;  // seq 1 appends at rows 1, 2 of that page; seq 0 appends at 5, 6
    i32(fx.t.cache_seqlens)[0] = 1 + 4;
    i32(fx.t.cache_leftpad)[0] = 0;
    i32(fx.t.cache_leftpad)[1] = 0;
    expect_error(fx, "block_table", "same cache row", [](KvCacheArgs&, Options&) {});
  }
  {  // contiguous: cache_batch_idx out of range, and a cache with fewer rows than sequences
    Fx fx(/*paged=*/false);
    HostTensor idx = HostTensor::make(DType::i32, {3});
    i32(idx)[0] = 0, i32(idx)[1] = 3, i32(idx)[2] = 1;
    expect_error(fx, "cache_batch_idx", "cache_batch_idx[1] = 3", [&](KvCacheArgs& a, Options&) { a.cache.cache_batch_idx = idx.view(); });
    expect_error(fx, "k_cache", "B_cache = 2", [](KvCacheArgs& a, Options&) {
      a.cache.k_cache.shape[0] = 2;
      a.cache.v_cache.shape[0] = 2;
    });
  }
}

TEST(ValidateKvCache, RotaryAndOptions) {
  Fx fx;
  expect_error(fx, "rotary_sin", "absent", [](KvCacheArgs& a, Options&) { a.rotary_sin = {}; });
  expect_error(fx, "rotary_cos", "given without k_new", [](KvCacheArgs& a, Options&) {
    a.k_new = {};
    a.v_new = {};
  });
  expect_error(fx, "rotary_cos", "rotary_dim = 18", [](KvCacheArgs& a, Options&) {
    a.rotary_cos.shape[1] = 9;
    a.rotary_sin.shape[1] = 9;
  });
  expect_error(fx, "rotary_sin", "shape", [](KvCacheArgs& a, Options&) { a.rotary_sin.shape[0] -= 1; });
  expect_error(fx, "rotary_cos", "dtype bf16", [](KvCacheArgs& a, Options&) {
    a.rotary_cos.dtype = DType::bf16;
  });
  expect_error(fx, "rotary_cos", "rotates position", [](KvCacheArgs& a, Options&) {
    a.rotary_cos.shape[0] = 9;
    a.rotary_sin.shape[0] = 9;
  });
  expect_error(fx, "num_splits", "-1", [](KvCacheArgs& a, Options&) { a.num_splits = -1; });
  expect_error(fx, "softcap", "-1", [](KvCacheArgs&, Options& o) { o.softcap = -1.f; });
  expect_error(fx, "window.right", "3", [](KvCacheArgs&, Options& o) { o.window.right = 3; });
  expect_error(fx, "dropout_p", "0.1", [](KvCacheArgs&, Options& o) { o.dropout_p = 0.1f; }, Error::Kind::unsupported);
  expect_error(fx, "causal_align", "top_left", [](KvCacheArgs&, Options& o) { o.causal_align = CausalAlign::top_left; },
               Error::Kind::unsupported);
  expect_error(fx, "dataflow", "flat", [](KvCacheArgs&, Options& o) { o.dataflow = Dataflow::flat; },
               Error::Kind::unsupported);
  HostTensor slopes = HostTensor::make(DType::f32, {3});
  expect_error(fx, "alibi_slopes", "shape (3)", [&](KvCacheArgs& a, Options&) { a.alibi_slopes = slopes.view(); });
  expect_error(fx, "sinks", "shape (3)", [&](KvCacheArgs& a, Options&) { a.sinks = slopes.view(); });
}

TEST(ValidateKvCache, CudaTensorsWithoutCudaKernelsAreRefused) {
  Fx fx;
  KvCacheArgs a = fx.t.args(Device::cuda());
  for (TensorView* v : {&a.q, &a.cache.k_cache, &a.cache.v_cache, &a.k_new, &a.v_new, &a.rotary_cos, &a.rotary_sin, &a.out})
    v->dtype = DType::f16;  // CUDA takes f16/bf16 (the data is never read: the call is refused first)
  if (cuda_built()) GTEST_SKIP() << "CUDA build: tests/cuda covers CUDA tensors";
  try {
    forward_kvcache(a, fx.t.c.options);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::unsupported) << e.what();
    EXPECT_EQ(e.argument(), "q.device") << e.what();
  }
}

namespace {

/// A varlen (paged prefill) call: Nq_b = {3, 0, 2}, no append, no rotary, causal, LSE.
struct FxVarlen : Fx {
  FxVarlen() {
    KvCase c = t.c;
    c.nnew = 0;
    c.rotary_dim = 0;
    c.q_lens = {3, 0, 2};
    t = make_kv_case(c, rng);
  }
};

}  // namespace

TEST(ValidateKvCache, VarlenShapesAndOffsets) {
  FxVarlen fx;
  {  // the call itself is valid
    KvCaseTensors t = fx.t;
    EXPECT_NO_THROW(forward_kvcache(t.args(), t.c.options));
  }
  HostTensor extra = HostTensor::make(DType::bf16, {2, 3, 2, 4});
  expect_error(fx, "q", "rank 4", [&](KvCacheArgs& a, Options&) { a.q = fx.t.k_cache.view(); });
  expect_error(fx, "cu_seqlens_q", "dtype f32", [](KvCacheArgs& a, Options&) { a.cu_seqlens_q.dtype = DType::f32; });
  expect_error(fx, "cu_seqlens_q", "rank 2", [](KvCacheArgs& a, Options&) { a.cu_seqlens_q.rank = 2; });
  expect_error(fx, "cu_seqlens_q", "length 0", [](KvCacheArgs& a, Options&) { a.cu_seqlens_q.shape[0] = 0; });
  expect_error(fx, "cache_seqlens", "shape (3)", [](KvCacheArgs& a, Options&) { a.cu_seqlens_q.shape[0] = 3; });
  expect_error(fx, "max_seqlen_q", "-1", [](KvCacheArgs& a, Options&) { a.max_seqlen_q = -1; });
  expect_error(fx, "max_seqlen_q", "2 with Nq_0 = 3", [](KvCacheArgs& a, Options&) { a.max_seqlen_q = 2; });
  expect_error(fx, "out", "shape", [](KvCacheArgs& a, Options&) { a.out.shape[0] = 4; });
  expect_error(fx, "lse", "shape", [](KvCacheArgs& a, Options&) { a.lse.shape[1] = 4; });
  expect_error(fx, "lse", "shape", [](KvCacheArgs& a, Options&) {  // the batched (B, Hq, Nq) layout
    a.lse.rank = 3;
    a.lse.shape[2] = 1;
    a.lse.stride[2] = 1;
  });
  expect_error(fx, "k_new", "given with cu_seqlens_q", [&](KvCacheArgs& a, Options&) {
    a.k_new = extra.view();
    a.v_new = extra.view();
  }, Error::Kind::unsupported);
  HostTensor tab = HostTensor::make(DType::f32, {64, 4});
  expect_error(fx, "rotary_cos", "given with cu_seqlens_q", [&](KvCacheArgs& a, Options&) {
    a.rotary_cos = tab.view();
    a.rotary_sin = tab.view();
  }, Error::Kind::unsupported);
  // Offsets: a first entry other than 0, decreasing, past total_q (= 5).
  HostTensor cu = HostTensor::make(DType::i32, {4});
  auto with = [&](std::vector<std::int32_t> v) {
    std::copy(v.begin(), v.end(), i32(cu));
    return [&](KvCacheArgs& a, Options&) { a.cu_seqlens_q = cu.view(); a.max_seqlen_q = 0; };
  };
  expect_error(fx, "cu_seqlens_q", "cu_seqlens_q[0] = 1", with({1, 3, 3, 5}));
  expect_error(fx, "cu_seqlens_q", "cu_seqlens_q[2] = 2 < cu_seqlens_q[1] = 3", with({0, 3, 2, 5}));
  expect_error(fx, "cu_seqlens_q", "cu_seqlens_q[3] = 6", with({0, 3, 3, 6}));
  // Metadata of the cache is still checked (no append: the key count is cache_seqlens[b]).
  const std::int64_t cap = fx.t.block_table.shape[1] * fx.t.page_size();
  i32(fx.t.cache_seqlens)[1] = static_cast<std::int32_t>(cap + 1);
  expect_error(fx, "cache_seqlens", "cache_seqlens[1] = " + std::to_string(cap + 1), [](KvCacheArgs&, Options&) {});
}
