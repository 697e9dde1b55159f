#include "tests/cuda/device_case.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "src/check/features.h"
#include "src/check/oracle.h"
#include "src/check/sparse_case.h"
#include "src/cuda/dispatch.h"
#include "src/check/yardstick.h"

namespace flatattn::testing {

namespace {

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

/// A device mirror of one host tensor.
class DeviceCopy {
 public:
  explicit DeviceCopy(const HostTensor& h) : bytes_(h.bytes()) {
    ok(cudaMalloc(&ptr_, bytes_ ? bytes_ : 16), "cudaMalloc");
    if (bytes_) ok(cudaMemcpy(ptr_, h.storage.data(), bytes_, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  ~DeviceCopy() { cudaFree(ptr_); }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;
  [[nodiscard]] TensorView view(const HostTensor& h) const {
    TensorView v = h.view(Device::cuda(0));
    v.data = ptr_;
    return v;
  }
  void to_host(HostTensor& h) const {
    if (bytes_) ok(cudaMemcpy(h.storage.data(), ptr_, bytes_, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_;
};

/// The case's cu_seqlens copied to the device (into cu_q, cu_k, which must outlive the call) as the
/// call's Varlen; max_seqlen from the case.
Varlen device_varlen(const CaseTensors& t, std::optional<DeviceCopy>& cu_q, std::optional<DeviceCopy>& cu_k) {
  cu_q.emplace(t.cu_q);
  cu_k.emplace(t.cu_k);
  Varlen vl;
  vl.cu_seqlens_q = cu_q->view(t.cu_q);
  vl.cu_seqlens_k = cu_k->view(t.cu_k);
  vl.max_seqlen_q = t.c.nq;
  vl.max_seqlen_k = t.c.nk;
  return vl;
}

/// GQA (Hq 8, Hkv 2) and causal MQA (Hq 6, Hkv 1) on strided (B, H, N, D) views of c's shape.
void push_gqa_mqa_strided(std::vector<Case>& v, Case c) {
  c.hq = 8, c.hkv = 2;
  c.strided = true;
  v.push_back(c);
  c.hq = 6, c.hkv = 1;
  c.options.causal = true;
  v.push_back(c);
}

}  // namespace

bool gpu_present() {
  int n = 0;
  const bool present = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();
  return present;
}

Report run_on_gpu(CaseTensors& t, bool own_stream) {
  DeviceCopy q(t.q), k(t.k), v(t.v), out(t.out), lse(t.lse);
  std::optional<DeviceCopy> cu_q, cu_k;
  ForwardArgs a;
  a.q = q.view(t.q);
  a.k = k.view(t.k);
  a.v = v.view(t.v);
  a.out = out.view(t.out);
  if (t.c.options.return_lse) a.lse = lse.view(t.lse);
  if (t.c.varlen) a.varlen = device_varlen(t, cu_q, cu_k);
  std::optional<DeviceCopy> alibi, sinks, bias;  // the features' tensors
  if (t.c.alibi) a.alibi_slopes = alibi.emplace(t.alibi).view(t.alibi);
  if (t.c.sinks) a.sinks = sinks.emplace(t.sinks).view(t.sinks);
  if (t.c.has_bias()) a.bias = bias.emplace(t.bias).view(t.bias);
  // Block-sparse lists, bits and global positions (issue 16), mirrored onto the device.
  std::map<const HostTensor*, std::unique_ptr<DeviceCopy>> sparse;
  for (HostTensor* x : sparse_tensors(t)) sparse[x] = std::make_unique<DeviceCopy>(*x);
  const ViewOf on = [&](const HostTensor& x) { return sparse.at(&x)->view(x); };
  a.block_sparse = sparse_args(t, on);
  a.local_global = local_global_args(t, on);
  cudaStream_t stream = nullptr;
  if (own_stream) ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  Report r = forward(a, t.c.options, Stream{stream});
  ok(stream ? cudaStreamSynchronize(stream) : cudaDeviceSynchronize(), "synchronize after forward");
  if (stream) cudaStreamDestroy(stream);
  out.to_host(t.out);
  lse.to_host(t.lse);
  return r;
}

Report run_backward_on_gpu(CaseTensors& t, bool own_stream, const std::function<void(BackwardArgs&)>& edit) {
  DeviceCopy dout(t.dout), q(t.q), k(t.k), v(t.v), out(t.out), lse(t.lse), dq(t.dq), dk(t.dk), dv(t.dv);
  std::optional<DeviceCopy> cu_q, cu_k;
  BackwardArgs a;
  a.dout = dout.view(t.dout);
  a.q = q.view(t.q);
  a.k = k.view(t.k);
  a.v = v.view(t.v);
  a.out = out.view(t.out);
  a.lse = lse.view(t.lse);
  a.dq = dq.view(t.dq);
  a.dk = dk.view(t.dk);
  a.dv = dv.view(t.dv);
  if (t.c.varlen) a.varlen = device_varlen(t, cu_q, cu_k);
  std::optional<DeviceCopy> alibi, sinks, dsinks;  // the features' per-head tensors
  if (t.c.alibi) a.alibi_slopes = alibi.emplace(t.alibi).view(t.alibi);
  if (t.c.sinks) {
    a.sinks = sinks.emplace(t.sinks).view(t.sinks);
    if (t.dsinks.numel() > 0) a.dsinks = dsinks.emplace(t.dsinks).view(t.dsinks);
  }
  std::optional<DeviceCopy> bias, dbias;
  if (t.c.has_bias()) {
    a.bias = bias.emplace(t.bias).view(t.bias);
    if (!t.dbias.shape.empty()) a.dbias = dbias.emplace(t.dbias).view(t.dbias);
  }
  std::map<const HostTensor*, std::unique_ptr<DeviceCopy>> sparse;  // block-sparse lists (issue 16)
  for (HostTensor* x : sparse_tensors(t)) sparse[x] = std::make_unique<DeviceCopy>(*x);
  const ViewOf on = [&](const HostTensor& x) { return sparse.at(&x)->view(x); };
  a.block_sparse = sparse_args(t, on);
  a.local_global = local_global_args(t, on);
  if (edit) edit(a);
  cudaStream_t stream = nullptr;
  if (own_stream) ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  auto finish = [&] {
    ok(stream ? cudaStreamSynchronize(stream) : cudaDeviceSynchronize(), "synchronize after backward");
    if (stream) cudaStreamDestroy(stream);
    dq.to_host(t.dq);
    dk.to_host(t.dk);
    dv.to_host(t.dv);
    if (dsinks) dsinks->to_host(t.dsinks);
    if (dbias) dbias->to_host(t.dbias);
  };
  Report r;
  try {
    r = backward(a, t.c.options, Stream{stream});
  } catch (...) {
    finish();  // the caller checks that nothing was written
    throw;
  }
  finish();
  return r;
}

void check_backward(CaseTensors& t, std::uint64_t seed, const char* what, FwdSource src) {
  t.c.options.return_lse = true;
  std::string fwd = "oracle";
  if (src == FwdSource::gpu) {
    const Dataflow keep = t.c.options.dataflow;
    if (keep == Dataflow::automatic) t.c.options.dataflow = Dataflow::flash;  // the training path
    fwd = run_on_gpu(t).kernel;
    t.c.options.dataflow = keep;
  } else {
    const ForwardOracle o = oracle_forward(t);
    for (std::int64_t i = 0; i < t.out.numel(); ++i) t.out.set(i, o.out.at(i));
    for (std::int64_t i = 0; i < t.lse.numel(); ++i) t.lse.set(i, o.lse.at(i));
  }
  const Report r = run_backward_on_gpu(t);
  const BackwardOracle ref = oracle_backward(t);
  // The yardstick takes the stored-O formulation too: in bf16 the rounding of O moves D_i by more than
  // the softmax-form yardstick allows for in rows where dP - D_i cancels (src/check/yardstick.h); judge_backward
  // adds no dS noise allowance outside f32.
  const BackwardYardstick y = naive_backward(t, ref);
  const std::string ctx = std::string(what) + " [" + t.c.name() + "] kernel " + r.kernel + " after " + fwd +
                          " (seed " + std::to_string(seed) + ", replay with FLATATTN_SEED)";
  for (const auto& [name, v, noise] : judge_backward(t, ref, y)) {
    if (std::getenv("FLATATTN_VERBOSE") != nullptr) std::cout << ctx << " " << name << ": " << v.detail() << "\n";
    EXPECT_TRUE(std::isfinite(v.bound)) << ctx << ": the " << name << " yardstick is not finite";
    EXPECT_TRUE(v.pass) << ctx << ": " << name << " " << v.detail();
  }
  if (t.c.sinks && t.dsinks.numel() > 0) {
    const Verdict v = judge_dsinks(t, ref, y);
    EXPECT_TRUE(std::isfinite(v.bound)) << ctx << ": the dsinks yardstick is not finite";
    EXPECT_TRUE(v.pass) << ctx << ": dsinks " << v.detail();
  }
  if (t.c.has_bias() && !t.dbias.shape.empty()) {
    const Verdict v = judge_dbias(t, ref, y);
    EXPECT_TRUE(std::isfinite(v.bound)) << ctx << ": the dbias yardstick is not finite";
    EXPECT_TRUE(v.pass) << ctx << ": dbias " << v.detail();
  }
}

Report check_case(CaseTensors& t, std::uint64_t seed, const char* what) {
  const Report r = run_on_gpu(t);
  judge_forward(t, r, seed, what);
  return r;
}

Report check_case(CaseTensors& t, const ForwardOracle& o, std::uint64_t seed, const char* what) {
  const Report r = run_on_gpu(t);
  judge_forward(t, o, r, seed, what);
  return r;
}

std::string judge_forward(const CaseTensors& t, const Report& r, std::uint64_t seed, const char* what) {
  return judge_forward(t, oracle_forward(t), r, seed, what);
}

std::string judge_forward(const CaseTensors& t, const ForwardOracle& o, const Report& r, std::uint64_t seed,
                          const char* what) {
  const Verdict v = judge_forward(t.out, o, t.c.dtype);
  const std::string ctx = std::string(what) + " [" + t.c.name() + "] kernel " + r.kernel + " (seed " +
                          std::to_string(seed) + ", replay with FLATATTN_SEED)";
  EXPECT_TRUE(std::isfinite(v.bound)) << ctx << ": the yardstick is not finite, the check could not fail";
  EXPECT_TRUE(v.pass) << ctx << ": out " << v.detail();
  if (t.c.options.return_lse) {
    const Verdict lv = judge_lse(t.lse, o.lse, lse_tolerance(t.c.input_sd, o.lse, true, lse_logit_rounding(t)));
    EXPECT_TRUE(lv.pass) << ctx << ": lse " << lv.detail();
  }
  return v.detail();
}

std::uint64_t seed_for(const char* test) {
  const std::uint64_t s = fresh_seed();
  std::cout << "[seed] " << test << " FLATATTN_SEED=" << s << "\n";
  return s;
}

Case small_case(DType dt, std::int64_t nq, std::int64_t nk, std::int64_t d) {
  Case c;
  c.dtype = dt;
  c.batch = 2;
  c.hq = 2;
  c.hkv = 1;
  c.nq = nq;
  c.nk = nk;
  c.d = d;
  c.options.return_lse = true;
  return c;
}

std::vector<Case> feature_mix(DType dt, std::int64_t d, std::int64_t window_nq, std::int64_t window_nk) {
  std::vector<Case> v;
  {  // windows, softcap
    Case c = small_case(dt, window_nq, window_nk, d);
    c.options.window = {31, 5};
    v.push_back(c);
    v.push_back(with_feature(c, "window_diagonal"));
    c.options.window = {130, -1};
    c.options.softcap = 30.f;
    c.input_sd = 3.0;
    v.push_back(c);
    c.options.window = {-1, -1};
    c.options.causal = true;
    v.push_back(c);
  }
  {  // large logits, negative scale
    Case c = small_case(dt, 77, 260, d);
    c.options.softmax_scale = 1.f;
    c.input_sd = dt == DType::f16 ? 20.0 : 35.0;
    v.push_back(c);
    v.push_back(with_feature(small_case(dt, 64, 196, d), "negative_scale"));
  }
  push_gqa_mqa_strided(v, small_case(dt, 65, 257, d));
  Case c = small_case(dt, 0, 0, d);  // varlen with empty sequences on both sides
  c.varlen = true;
  c.seqlens_q = {0, 5, 0, 130, 64, 1, 257};
  c.seqlens_k = {7, 0, 0, 130, 200, 1, 300};
  c.batch = 7;
  v.push_back(c);
  return v;
}

std::vector<Case> edge_cases(DType dt) {
  std::vector<Case> v;
  for (std::int64_t n : {1, 17, 97}) v.push_back(small_case(dt, n, n));
  {  // a long causal row block, one head
    Case c = small_case(dt, 1025, 1025);
    c.batch = 1, c.hq = 1;
    c.options.causal = true;
    v.push_back(c);
  }
  // Nq != Nk, both causal alignments (the table's causal features on these shapes)
  v.push_back(with_feature(small_case(dt, 100, 37), "causal_br_tall"));
  v.push_back(with_feature(small_case(dt, 100, 37), "causal_tl"));
  v.push_back(with_feature(small_case(dt, 37, 300), "causal_br"));
  v.push_back(with_feature(small_case(dt, 37, 300), "causal_tl_wide"));
  // fully masked rows: bottom-right causal with Nq > Nk, a (0, 0) window with Nq > Nk
  v.push_back(with_feature(small_case(dt, 200, 20), "causal_br_tall"));
  v.push_back(with_feature(small_case(dt, 90, 50), "window_diagonal"));
  // negative scale (the max of the raw logits is not the max of the scaled ones)
  v.push_back(with_feature(small_case(dt, 64, 96), "negative_scale"));
  push_gqa_mqa_strided(v, small_case(dt, 65, 129));
  return v;
}

bool dtype_runs(DType dtype) {
  try {
    cuda::path_info(0, dtype);
    return true;
  } catch (const Error& e) {
    if (e.kind() != Error::Kind::unsupported) throw;
    return false;
  }
}

}  // namespace flatattn::testing
