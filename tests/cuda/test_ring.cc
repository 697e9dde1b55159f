// Ring attention on CUDA (include/flatattn/context_parallel.h). One GPU is enough for what runs here: the
// in-process LocalRing with W = 2 (and 4) ranks as threads on one device, each on its own stream, judged against
// the fp64 oracle (causal zigzag, a window, softcap, document masks); and, in a build with -DFLATATTN_NCCL=ON, the NCCL transport at W = 1 (a one-rank communicator:
// a send/recv to itself through post()/wait(), the ring over it, and its rank/world checks). W >= 2 over NCCL
// needs one GPU per rank (docs/context_parallel.md).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#ifdef FLATATTN_HAVE_NCCL
#include <nccl.h>
#endif

#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "src/check/oracle.h"
#include "src/check/yardstick.h"
#include "src/core/half.h"
#include "tests/cp/ring_driver.h"
#include "tests/cuda/device_case.h"

namespace flatattn::testing {
namespace {

// One rank's device copies of its shards, on its own non-blocking stream.
class CudaMemory final : public RingMemory {
 public:
  CudaMemory() { cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking); }
  ~CudaMemory() override {
    cudaStreamSynchronize(stream_);
    for (auto& [h, p] : dev_) cudaFree(p);
    cudaStreamDestroy(stream_);
  }
  TensorView put(HostTensor& h) override {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, h.bytes()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, h.data(), h.bytes(), cudaMemcpyHostToDevice), cudaSuccess);
    dev_[&h] = p;
    TensorView v = h.view(Device::cuda(0));
    v.data = p;
    return v;
  }
  void get(HostTensor& h) override {
    cudaStreamSynchronize(stream_);
    EXPECT_EQ(cudaMemcpy(h.data(), dev_.at(&h), h.bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  Stream stream() override { return Stream{stream_}; }

 private:
  cudaStream_t stream_ = nullptr;
  std::map<HostTensor*, void*> dev_;
};

std::unique_ptr<RingMemory> cuda_memory(int) { return std::make_unique<CudaMemory>(); }

// The whole-sequence judgement (forward: out, LSE; backward: dq, dk, dv) with the CUDA LSE tolerance.
void judge_ring(const CaseTensors& t, const std::string& what) {
  const ForwardOracle o = oracle_forward(t);
  const Verdict v = check::judge_forward(t.out, o, t.c.dtype);
  EXPECT_TRUE(std::isfinite(v.bound)) << what << ": the yardstick is not finite";
  EXPECT_TRUE(v.pass) << what << " out: " << v.detail();
  const Verdict lv = judge_lse(t.lse, o.lse, lse_tolerance(t.c.input_sd, o.lse, true, lse_logit_rounding(t)));
  EXPECT_TRUE(lv.pass) << what << " lse: " << lv.detail();
  const BackwardOracle ref = oracle_backward(t);
  const BackwardYardstick y = naive_backward(t, ref);
  for (const auto& [name, gv, noise] : judge_backward(t, ref, y))
    EXPECT_TRUE(gv.pass) << what << " " << name << ": " << gv.detail() << " noise=" << noise;
}

Case ring_case(DType dt, bool causal, Window w, float softcap) {
  Case c;
  c.batch = 2;
  c.nq = c.nk = 256;
  c.hq = 4;
  c.hkv = 2;
  c.d = 64;
  c.dtype = dt;
  c.options.causal = causal;
  c.options.window = w;
  c.options.softcap = softcap;
  c.options.return_lse = true;
  return c;
}

TEST(CudaRing, LocalRingRanksOnOneGpuMatchTheOracle) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaRing.LocalRingRanksOnOneGpuMatchTheOracle");
  std::mt19937_64 rng(seed);
  struct R {
    const char* name;
    Case c;
    SeqLayout layout;
    int world;
  };
  Case docs = ring_case(DType::bf16, true, {}, 0.0f);  // document masks: one packed sequence of 256 tokens
  docs.varlen = true;
  docs.seqlens_q = docs.seqlens_k = {100, 1, 0, 131, 24};
  // dropout: each rank's mask is the single-device mask (block calls at their global positions, issue 19)
  Case drop = ring_case(DType::bf16, true, {}, 0.0f);
  drop.options.dropout_p = 0.2f, drop.options.dropout_seed = rng(), drop.options.dropout_offset = rng();
  Case drop_full = ring_case(DType::f16, false, {}, 0.0f);
  drop_full.options.dropout_p = 0.5f, drop_full.options.dropout_seed = rng(), drop_full.options.dropout_offset = rng();
  // dropout with document masks: each (hop, document) call at its document's position (dropout_batch0 = the
  // document); documents crossing chunks meet them at multiples of 64 of the document (kDropoutColAlign). 512
  // tokens: zigzag chunks of 64 at W = 4; the documents [64, 192) and [256, 500) cross chunk boundaries at their
  // columns 64, 128, 192; the others lie inside one chunk and start anywhere.
  Case docs_drop = ring_case(DType::bf16, true, {}, 0.0f);
  docs_drop.varlen = true;
  docs_drop.nq = docs_drop.nk = 512;
  docs_drop.seqlens_q = docs_drop.seqlens_k = {5, 12, 15, 0, 32, 128, 5, 59, 244, 12};
  docs_drop.options.dropout_p = 0.2f, docs_drop.options.dropout_seed = rng(), docs_drop.options.dropout_offset = rng();
  Case docs_drop_full = docs_drop;
  docs_drop_full.dtype = DType::f16, docs_drop_full.options.causal = false, docs_drop_full.options.dropout_p = 0.5f;
  const R runs[] = {
      {"dropout 0.2 documents causal zigzag bf16 W=4", docs_drop, SeqLayout::zigzag, 4},
      {"dropout 0.2 documents causal zigzag bf16 W=2", docs_drop, SeqLayout::zigzag, 2},
      {"dropout 0.5 documents non-causal contiguous f16 W=4", docs_drop_full, SeqLayout::contiguous, 4},
      {"dropout 0.2 causal zigzag bf16 W=2", drop, SeqLayout::zigzag, 2},  // 256 tokens: zigzag chunks of 64
      {"dropout 0.5 non-causal contiguous f16", drop_full, SeqLayout::contiguous, 2},
      {"causal zigzag bf16", ring_case(DType::bf16, true, {}, 0.0f), SeqLayout::zigzag, 2},
      {"documents causal zigzag bf16", docs, SeqLayout::zigzag, 2},
      {"causal zigzag f16 W=4", ring_case(DType::f16, true, {}, 0.0f), SeqLayout::zigzag, 4},
      {"window contiguous bf16", ring_case(DType::bf16, false, {40, 9}, 0.0f), SeqLayout::contiguous, 2},
      {"softcap non-causal f16", ring_case(DType::f16, false, {}, 10.0f), SeqLayout::contiguous, 2},
  };
  for (const R& r : runs) {
    CaseTensors t = make_case(r.c, rng, true);
    const RingRun run = run_ring(t, r.world, r.layout, r.c.options, true, cuda_memory, Device::cuda(0));
    for (int k = 0; k < r.world; ++k) ASSERT_EQ(run.errors[k], "") << r.name << " rank " << k;
    judge_ring(t, std::string(r.name) + " [" + r.c.name() + "] " + run.report.kernel + " seed " + std::to_string(seed));
  }
}

// float32 dq/dk/dv of 16-bit inputs (ring attention's per-hop gradients, summed over the hops and rounded once): the
// kernels store the fp32 values that their 16-bit stores round, so each element rounds to exactly the 16-bit call's
// gradient (deterministic mode: dQ's sums are the same bits in both calls); and some are not already 16-bit values.
// Cases: GQA causal, dropout, varlen with an empty sequence, D = 128 and 256, both causal alignments; on Hopper the
// sm90 family, elsewhere the sm80 one. D not a multiple of 8 (the padding copies are 16-bit) is refused naming dq,
// and a dtype mix naming dv, with nothing written.
TEST(CudaRing, Fp32GradientsOf16BitInputsAreTheUnroundedValues) {
  REQUIRE_GPU();
  const std::uint64_t seed = seed_for("CudaRing.Fp32GradientsOf16BitInputsAreTheUnroundedValues");
  std::mt19937_64 rng(seed);
  struct Device32 {  // a poisoned fp32 copy of a gradient's layout on the device, and back
    HostTensor h;
    void* p = nullptr;
    explicit Device32(const HostTensor& like) : h(HostTensor::poisoned_like(like, DType::f32)) {
      EXPECT_EQ(cudaMalloc(&p, h.bytes()), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(p, h.data(), h.bytes(), cudaMemcpyHostToDevice), cudaSuccess);
    }
    ~Device32() { cudaFree(p); }
    TensorView view() const {
      TensorView v = h.view(Device::cuda(0));
      v.data = p;
      return v;
    }
    void fetch() { EXPECT_EQ(cudaMemcpy(h.data(), p, h.bytes(), cudaMemcpyDeviceToHost), cudaSuccess); }
  };
  std::vector<Case> cases;
  {
    Case c = small_case(DType::bf16, 90, 130, 64);
    c.options.causal = true;
    cases.push_back(c);
    c = small_case(DType::f16, 77, 140, 128);
    c.options.dropout_p = 0.2f, c.options.dropout_seed = rng(), c.options.dropout_offset = rng();
    cases.push_back(c);
    c = small_case(DType::bf16, 33, 39, 128);  // varlen: nq, nk = the longest sequences
    c.varlen = true;
    c.seqlens_q = {33, 0, 31}, c.seqlens_k = {20, 5, 39};
    c.batch = 3;
    c.options.causal = true, c.options.causal_align = CausalAlign::bottom_right;
    cases.push_back(c);
    c = small_case(DType::bf16, 70, 50, 256);
    c.options.window = {17, 3};
    cases.push_back(c);
  }
  for (Case& c : cases) {
    c.options.deterministic = true;
    c.options.return_lse = true;
    SCOPED_TRACE(c.name() + " seed " + std::to_string(seed));
    CaseTensors t = make_case(c, rng, true);
    run_on_gpu(t);
    CaseTensors t32 = t;
    const Report r16 = run_backward_on_gpu(t);
    Device32 g[3] = {Device32(t.dq), Device32(t.dk), Device32(t.dv)};
    const Report r32 = run_backward_on_gpu(t32, false, [&](BackwardArgs& a) {
      a.dq = g[0].view(), a.dk = g[1].view(), a.dv = g[2].view();
    });
    EXPECT_EQ(r32.kernel, r16.kernel);
    const HostTensor* want[3] = {&t.dq, &t.dk, &t.dv};
    std::int64_t inexact = 0;
    for (int i = 0; i < 3; ++i) {
      g[i].fetch();
      ASSERT_EQ(g[i].h.count_nonfinite(), 0) << "gradient " << i << " " << r32.kernel;
      for (std::int64_t e = 0; e < g[i].h.numel(); ++e) {
        const auto f = static_cast<float>(g[i].h.at(e));
        const float rounded = static_cast<float>(round_to(c.dtype, f));
        ASSERT_EQ(rounded, static_cast<float>(want[i]->at(e))) << "gradient " << i << " element " << e << " " << r32.kernel;
        inexact += rounded != f;
      }
    }
    EXPECT_GT(inexact, 0) << "the fp32 gradients were already rounded to " << name(c.dtype);
  }
  // Refused, nothing written: D = 59 (staged rows are 16-bit), and dv 16-bit next to float32 dq, dk.
  for (int which = 0; which < 2; ++which) {
    Case c = small_case(DType::bf16, 40, 40, which == 0 ? 59 : 64);
    c.options.return_lse = true;
    CaseTensors t = make_case(c, rng, true);
    run_on_gpu(t);
    Device32 g[3] = {Device32(t.dq), Device32(t.dk), Device32(t.dv)};
    try {
      run_backward_on_gpu(t, false, [&](BackwardArgs& a) {
        a.dq = g[0].view(), a.dk = g[1].view();
        if (which == 0) a.dv = g[2].view();
      });
      ADD_FAILURE() << (which == 0 ? "D = 59 with float32 gradients" : "float32 dq, dk with bf16 dv") << " was accepted";
    } catch (const Error& err) {
      EXPECT_EQ(err.argument(), which == 0 ? "dq" : "dv") << err.what();
    }
    for (int i = 0; i < 3; ++i) {
      g[i].fetch();
      EXPECT_EQ(g[i].h.count_nonfinite(), g[i].h.numel()) << "a refused call wrote gradient " << i;
    }
    EXPECT_EQ(t.dv.count_nonfinite(), t.dv.numel()) << "a refused call wrote dv";
  }
}

#ifdef FLATATTN_HAVE_NCCL
struct OneRankComm {
  ncclComm_t comm = nullptr;
  OneRankComm() {
    ncclUniqueId id;
    EXPECT_EQ(ncclGetUniqueId(&id), ncclSuccess);
    cudaSetDevice(0);
    EXPECT_EQ(ncclCommInitRank(&comm, 1, id, 0), ncclSuccess);
  }
  ~OneRankComm() {
    if (comm) ncclCommDestroy(comm);
  }
};
#endif

TEST(CudaRing, NcclTransportAtWorldOne) {
  REQUIRE_GPU();
#ifndef FLATATTN_HAVE_NCCL
  GTEST_SKIP() << "built without -DFLATATTN_NCCL=ON";
#else
  OneRankComm c;
  ASSERT_NE(c.comm, nullptr);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  auto tr = nccl_transport(c.comm, 0, 1, Stream{s});
  // A send to itself: post() then wait(), ordered on s.
  const std::size_t n = 1 << 16;
  std::vector<std::uint32_t> host(n), back(n, 0);
  for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<std::uint32_t>(i * 2654435761u);
  void *send = nullptr, *recv = nullptr;
  ASSERT_EQ(cudaMalloc(&send, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&recv, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(send, host.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(recv, 0, n * 4), cudaSuccess);
  for (int round = 0; round < 3; ++round) {
    const int ticket = tr->post(send, recv, n * 4, 1, -1, Stream{s});
    tr->wait(ticket, Stream{s});
  }
  ASSERT_EQ(cudaMemcpyAsync(back.data(), recv, n * 4, cudaMemcpyDeviceToHost, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(back, host);
  cudaFree(send);
  cudaFree(recv);
  EXPECT_THROW((void)nccl_transport(c.comm, 0, 2, Stream{s}), Error);  // world != the communicator's
  EXPECT_THROW((void)nccl_transport(c.comm, 1, 1, Stream{s}), Error);  // rank out of range
  cudaStreamDestroy(s);
  // The ring over NCCL at W = 1 (one step: no transfer), judged.
  const std::uint64_t seed = seed_for("CudaRing.NcclTransportAtWorldOne");
  std::mt19937_64 rng(seed);
  const Case rc = ring_case(DType::bf16, true, {}, 0.0f);
  CaseTensors t = make_case(rc, rng, true);
  const RingRun run = run_ring(t, 1, SeqLayout::zigzag, rc.options, true, cuda_memory, Device::cuda(0),
                               [&](int r) { return nccl_transport(c.comm, r, 1, {}); });
  ASSERT_EQ(run.errors[0], "");
  judge_ring(t, "nccl W=1 seed " + std::to_string(seed));
#endif
}

}  // namespace
}  // namespace flatattn::testing
