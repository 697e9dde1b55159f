// Block-sparse lists the CUDA backend derives on the device (issue 16; src/cuda/sparse_derive.h): the kv lists
// of local + global attention without BlockSparse and the backward's transposed q lists when the caller passes
// none. CudaSparseDerive.LocalGlobalListsEqualTheHost / TransposeEqualsTheHost: random cases (batches, varlen
// with an empty sequence, causal in both alignments, windows, globals at the ends and in the middle, G = 0,
// per-sequence counts, Nq != Nk; per-head and broadcast user lists, with and without full lists) derived on the
// device, copied back and compared with the CPU's lists count for count and index for index.
// CudaSparseDerive.LocalGlobalAgainstOracle / BackwardWithoutQListsAgainstOracle: whole calls against the fp64
// oracle. CudaSparseDerive.BadInputNothingWritten: what validation refuses is still refused before the
// derivation, with the outputs' poison intact.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "src/core/validate.h"
#include "src/check/sparse_case.h"
#include "src/cuda/sparse_derive.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

/// Device copies of host tensors, freed with the object.
class Mirrors {
 public:
  Mirrors() = default;
  Mirrors(const Mirrors&) = delete;
  Mirrors& operator=(const Mirrors&) = delete;
  ~Mirrors() {
    for (auto& [h, p] : ptrs_) cudaFree(p);
  }
  TensorView view(const HostTensor& h) {
    void*& p = ptrs_[&h];
    if (p == nullptr) {
      EXPECT_EQ(cudaMalloc(&p, std::max<std::size_t>(h.bytes(), 16)), cudaSuccess);
      if (h.bytes()) EXPECT_EQ(cudaMemcpy(p, h.data(), h.bytes(), cudaMemcpyHostToDevice), cudaSuccess);
    }
    TensorView v = h.view(Device::cuda(0));
    v.data = p;
    return v;
  }

 private:
  std::map<const HostTensor*, void*> ptrs_;
};

/// t's backward arguments with every tensor mirrored onto device 0.
BackwardArgs device_backward_args(CaseTensors& t, Mirrors& m) {
  BackwardArgs a;
  a.dout = m.view(t.dout), a.q = m.view(t.q), a.k = m.view(t.k), a.v = m.view(t.v), a.out = m.view(t.out);
  a.lse = m.view(t.lse), a.dq = m.view(t.dq), a.dk = m.view(t.dk), a.dv = m.view(t.dv);
  if (t.c.varlen) {
    Varlen vl;
    vl.cu_seqlens_q = m.view(t.cu_q), vl.cu_seqlens_k = m.view(t.cu_k);
    vl.max_seqlen_q = t.c.nq, vl.max_seqlen_k = t.c.nk;
    a.varlen = vl;
  }
  const ViewOf on = [&](const HostTensor& x) { return m.view(x); };
  a.block_sparse = sparse_args(t, on);
  a.local_global = local_global_args(t, on);
  return a;
}

/// The device's derived lists of a validated CUDA problem, copied to the host: derive_lists into a fresh
/// buffer on the default stream, then the buffer back; the returned views point into `host`.
SparseSpec derive_on_device(const Problem& p, std::vector<std::int32_t>& host) {
  const std::size_t bytes = cuda::derived_lists_bytes(p);
  void* ws = nullptr;
  EXPECT_EQ(cudaMalloc(&ws, std::max<std::size_t>(bytes, 16)), cudaSuccess);
  // Poison: an entry the kernels should have written but did not shows up as a mismatch.
  EXPECT_EQ(cudaMemset(ws, 0xA5, std::max<std::size_t>(bytes, 16)), cudaSuccess);
  SparseSpec s = cuda::derive_lists(p, ws, nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  host.assign(bytes / sizeof(std::int32_t) + 1, 0);
  if (bytes) EXPECT_EQ(cudaMemcpy(host.data(), ws, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(ws);
  auto rebase = [&](IntView& v) {
    if (v.data == nullptr) return;
    v.data = host.data() + (v.data - static_cast<const std::int32_t*>(ws));
  };
  for (BlockLists* l : {&s.kv, &s.q}) rebase(l->num), rebase(l->idx), rebase(l->full_num), rebase(l->full_idx);
  return s;
}

/// Counts and the first count indices of every row (b, h, r) of two lists over an nb x nh x rows grid.
void expect_same_lists(const BlockLists& want, const BlockLists& got, std::int64_t nb, std::int64_t nh,
                       std::int64_t rows, const std::string& what) {
  for (std::int64_t b = 0; b < nb; ++b)
    for (std::int64_t h = 0; h < nh; ++h)
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::string at = what + " row (" + std::to_string(b) + ", " + std::to_string(h) + ", " + std::to_string(r) + ")";
        ASSERT_EQ(got.partial_count(b, h, r), want.partial_count(b, h, r)) << at << " partial count";
        ASSERT_EQ(got.full_count(b, h, r), want.full_count(b, h, r)) << at << " full count";
        for (int s = 0; s < want.partial_count(b, h, r); ++s)
          ASSERT_EQ(got.idx.at(b, h, r, s), want.idx.at(b, h, r, s)) << at << " partial slot " << s;
        for (int s = 0; s < want.full_count(b, h, r); ++s)
          ASSERT_EQ(got.full_idx.at(b, h, r, s), want.full_idx.at(b, h, r, s)) << at << " full slot " << s;
      }
}

/// A random local + global case with derived lists: 1-3 sequences (varlen with an empty one, or batched),
/// Nq != Nk often, causal in either alignment or not, a window or none, globals at the ends / middle or none.
Case random_local_global(std::mt19937_64& rng, DType dt) {
  auto uni = [&](std::int64_t a, std::int64_t b) { return std::uniform_int_distribution<std::int64_t>(a, b)(rng); };
  Case c;
  c.dtype = dt, c.d = 64, c.hq = 4, c.hkv = uni(0, 1) ? 2 : 4;
  c.options.return_lse = true;
  c.varlen = uni(0, 1) == 0;
  if (c.varlen) {
    const std::int64_t b = uni(2, 3);
    for (std::int64_t i = 0; i < b; ++i) {
      const std::int32_t q = static_cast<std::int32_t>(uni(1, 420));
      c.seqlens_q.push_back(q), c.seqlens_k.push_back(uni(0, 1) ? q : static_cast<std::int32_t>(uni(1, 420)));
    }
    c.seqlens_q[uni(0, b - 1)] = 0;  // an empty sequence (its keys may remain)
    c.batch = b;
    c.nq = *std::max_element(c.seqlens_q.begin(), c.seqlens_q.end());
    c.nk = *std::max_element(c.seqlens_k.begin(), c.seqlens_k.end());
  } else {
    c.batch = uni(1, 2), c.nq = uni(1, 420), c.nk = uni(0, 1) ? c.nq : uni(1, 420);
  }
  c.options.causal = uni(0, 1) == 0;
  c.options.causal_align = uni(0, 1) ? CausalAlign::bottom_right : CausalAlign::top_left;
  switch (uni(0, 2)) {
    case 0: break;
    case 1: c.options.window = {uni(0, 150), c.options.causal ? 0 : uni(0, 150)}; break;
    default: c.options.window = {uni(0, 60), c.options.causal ? -1 : uni(0, 60)}; break;
  }
  c.sparse.derive = true, c.sparse.rule = SparseCase::Rule::local_global;
  const std::int64_t n = std::max(c.nq, c.nk);
  switch (uni(0, 3)) {
    case 0: break;  // G = 0
    case 1: c.sparse.globals = {0, static_cast<std::int32_t>(n - 1)}; break;
    case 2: c.sparse.globals = {static_cast<std::int32_t>(n / 2)}; break;
    default:
      for (std::int64_t x = 0; x < n; x += uni(1, n)) c.sparse.globals.push_back(static_cast<std::int32_t>(x));
  }
  c.sparse.globals.erase(std::unique(c.sparse.globals.begin(), c.sparse.globals.end()), c.sparse.globals.end());
  return c;
}

/// Per-sequence globals (B, G) with counts, replacing the case's shared row: sorted distinct positions below
/// max(Nq, Nk), garbage past each count.
void per_sequence_globals(CaseTensors& t, HostTensor& counts, std::mt19937_64& rng) {
  const std::int64_t b = t.c.batch, n = std::max(t.c.nq, t.c.nk), g = 4;
  t.globals = HostTensor::make(DType::i32, {b, g});
  counts = HostTensor::make(DType::i32, {b});
  auto* pos = static_cast<std::int32_t*>(t.globals.data());
  auto* cnt = static_cast<std::int32_t*>(counts.data());
  for (std::int64_t s = 0; s < b; ++s) {
    std::vector<std::int32_t> p;
    for (int x = 0; x < g; ++x) p.push_back(static_cast<std::int32_t>(rng() % n));
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
    p.resize(rng() % (p.size() + 1));
    cnt[s] = static_cast<std::int32_t>(p.size());
    for (std::int64_t x = 0; x < g; ++x) pos[s * g + x] = x < static_cast<std::int64_t>(p.size()) ? p[x] : -5;
  }
}

class CudaSparseDerive : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_GPU(); }
};

TEST_F(CudaSparseDerive, LocalGlobalListsEqualTheHost) {
  const std::uint64_t seed = seed_for("CudaSparseDerive.LocalGlobalListsEqualTheHost");
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 60; ++i) {
    const Case c = random_local_global(rng, DType::f16);
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    HostTensor counts;
    const bool with_counts = i % 3 == 2;
    if (with_counts) per_sequence_globals(t, counts, rng);
    BackwardArgs ha = t.backward_args();
    Mirrors m;
    BackwardArgs da = device_backward_args(t, m);
    if (with_counts) ha.local_global->global_counts = counts.view(), da.local_global->global_counts = m.view(counts);
    const std::string what = "case " + std::to_string(i) + " (" + c.name() + (with_counts ? ", per-sequence globals" : "") +
                             ", seed " + std::to_string(seed) + ")";
    const ValidatedBackward host = validate_backward(ha, c.options);
    const ValidatedBackward dev = validate_backward(da, c.options);
    ASSERT_TRUE(dev.problem.sparse.derive_kv && dev.problem.sparse.derive_q) << what;
    std::vector<std::int32_t> buf;
    const SparseSpec got = derive_on_device(dev.problem, buf);
    const SparseSpec& want = host.problem.sparse;
    expect_same_lists(want.kv, got.kv, c.batch, 1, want.nqb, what + " kv");
    expect_same_lists(want.q, got.q, c.batch, 1, want.nkb, what + " q");
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST_F(CudaSparseDerive, TransposeEqualsTheHost) {
  const std::uint64_t seed = seed_for("CudaSparseDerive.TransposeEqualsTheHost");
  std::mt19937_64 rng(seed);
  const int sizes[] = {64, 128, 256};
  for (int i = 0; i < 40; ++i) {
    Case c;
    c.dtype = DType::f16, c.d = 64, c.hq = 4, c.hkv = 2, c.batch = 1 + static_cast<std::int64_t>(rng() % 2);
    c.nq = 1 + static_cast<std::int64_t>(rng() % 700), c.nk = (rng() & 1) ? c.nq : 1 + static_cast<std::int64_t>(rng() % 700);
    c.options.return_lse = true;
    c.sparse.block_q = sizes[rng() % 3], c.sparse.block_kv = sizes[rng() % 3];
    c.sparse.density = std::vector<double>{1.0, 0.5, 0.25, 0.0}[rng() % 4];
    c.sparse.full_share = std::vector<double>{0.0, 0.5, 1.0}[rng() % 3];
    c.sparse.per_head = rng() & 1;
    c.sparse.rule = (rng() & 1) ? SparseCase::Rule::bits : SparseCase::Rule::band;
    c.sparse.give_q = false;
    CaseTensors t = make_case(c, rng, /*with_backward=*/true);
    Mirrors m;
    const std::string what = "case " + std::to_string(i) + " (" + c.name() + ", seed " + std::to_string(seed) + ")";
    const ValidatedBackward host = validate_backward(t.backward_args(), c.options);
    const ValidatedBackward dev = validate_backward(device_backward_args(t, m), c.options);
    ASSERT_TRUE(!dev.problem.sparse.derive_kv && dev.problem.sparse.derive_q) << what;
    std::vector<std::int32_t> buf;
    const SparseSpec got = derive_on_device(dev.problem, buf);
    const SparseSpec& want = host.problem.sparse;
    EXPECT_EQ(got.q.full_num.present(), want.kv.full_num.present()) << what << ": full q lists iff full kv lists";
    expect_same_lists(want.q, got.q, dev.problem.sparse.list_b, dev.problem.sparse.list_h, want.nkb, what + " q");
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Whole calls with derived lists against the oracle: the forward and the backward of random local + global cases
// (the lists never leave the device), on the default policy's family.
TEST_F(CudaSparseDerive, LocalGlobalAgainstOracle) {
  const std::uint64_t seed = seed_for("CudaSparseDerive.LocalGlobalAgainstOracle");
  std::mt19937_64 rng(seed);
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    for (int i = 0; i < 6; ++i) {
      const Case c = random_local_global(rng, dt);
      CaseTensors t = make_case(c, rng, /*with_backward=*/true);
      check_case(t, seed, ("forward " + c.name()).c_str());
      CaseTensors u = make_case(c, rng, /*with_backward=*/true);
      check_backward(u, seed, ("backward " + c.name()).c_str());
    }
  }
}

// A backward with the caller's kv lists and no q lists (it was refused before the device transpose): the
// gradients against the oracle, partial + full, full-only and partial-only lists, per-head and broadcast, GQA,
// varlen, causal.
TEST_F(CudaSparseDerive, BackwardWithoutQListsAgainstOracle) {
  const std::uint64_t seed = seed_for("CudaSparseDerive.BackwardWithoutQListsAgainstOracle");
  std::mt19937_64 rng(seed);
  for (DType dt : {DType::f16, DType::bf16}) {
    if (!dtype_runs(dt)) continue;
    for (double full_share : {0.5, 1.0, 0.0}) {
      for (bool varlen : {false, true}) {
        Case c;
        c.dtype = dt, c.d = 128, c.hq = 4, c.hkv = 2, c.batch = 2, c.nq = 384, c.nk = 454;
        c.options.return_lse = true;
        c.options.causal = full_share == 0.5;
        c.sparse.block_q = 128, c.sparse.block_kv = 128;
        c.sparse.density = 0.5, c.sparse.full_share = full_share, c.sparse.per_head = !varlen;
        c.sparse.rule = full_share == 1.0 ? SparseCase::Rule::band : SparseCase::Rule::bits;
        c.sparse.give_q = false;
        if (varlen) c.varlen = true, c.seqlens_q = {384, 0, 200}, c.seqlens_k = {454, 100, 130}, c.batch = 3;
        CaseTensors t = make_case(c, rng, /*with_backward=*/true);
        check_backward(t, seed, c.name().c_str());
      }
    }
  }
}

// Refusals stay before anything is written: globals of the wrong shape (B' = 3 with B = 2), the wrong dtype, and
// mask_bits with local + global; the outputs keep their poison (the derivation runs only after validation).
TEST_F(CudaSparseDerive, BadInputNothingWritten) {
  Case c;
  c.dtype = DType::f16, c.d = 64, c.hq = 2, c.hkv = 2, c.batch = 2, c.nq = 300, c.nk = 300;
  c.options.window = {40, 40};
  c.sparse.derive = true, c.sparse.rule = SparseCase::Rule::local_global, c.sparse.globals = {0, 150};
  for (int bad = 0; bad < 2; ++bad) {
    CaseTensors t = make_case(c, 5, /*with_backward=*/true);
    if (bad == 0) t.globals = HostTensor::make(DType::i32, {3, 2});
    if (bad == 1) t.globals = HostTensor::make(DType::f32, {1, 2});
    const char* what = bad == 0 ? "globals (3, G)" : "globals f32";
    try {
      run_on_gpu(t);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), Error::Kind::invalid_argument) << e.what();
      EXPECT_NE(std::string(e.what()).find("local_global.global_positions"), std::string::npos) << e.what();
    }
    EXPECT_EQ(t.out.count_nonfinite(), t.out.numel()) << what << ": out was written";
    try {
      run_backward_on_gpu(t);
      ADD_FAILURE() << what << ": no error (backward)";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("local_global.global_positions"), std::string::npos) << e.what();
    }
    for (const HostTensor* g : {&t.dq, &t.dk, &t.dv})
      EXPECT_EQ(g->count_nonfinite(), g->numel()) << what << ": a gradient was written";
  }
  // Bits with local + global: one element rule per call.
  CaseTensors t = make_case(c, 6, /*with_backward=*/true);
  HostTensor bits = HostTensor::make(DType::i32, {1, 128, 4}), off = HostTensor::make(DType::i32, {1, 1, 3});
  HostTensor idx = HostTensor::make(DType::i32, {1, 1, 3, 3});
  Mirrors m;
  try {
    run_backward_on_gpu(t, false, [&](BackwardArgs& a) {
      a.block_sparse = BlockSparse{};
      a.block_sparse->kv_num_blocks = m.view(off), a.block_sparse->kv_indices = m.view(idx);
      a.block_sparse->mask_bits = m.view(bits), a.block_sparse->mask_block_offsets = m.view(off);
    });
    ADD_FAILURE() << "bits with local_global: no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("block_sparse.mask_bits"), std::string::npos) << e.what();
  }
  for (const HostTensor* g : {&t.dq, &t.dk, &t.dv}) EXPECT_EQ(g->count_nonfinite(), g->numel()) << "a gradient was written";
}

}  // namespace
