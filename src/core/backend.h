// The interface every backend implements. Dispatch (src/core/dispatch.cc) validates, then calls one.
#pragma once

#include "flatattn/attention.h"
#include "src/core/kv_problem.h"
#include "src/core/philox.h"
#include "src/core/problem.h"

namespace flatattn::cpu {
/// Fused CPU forward (src/cpu): Flash or FLAT dataflow per p.dataflow (automatic: the CPU policy picks).
Report forward(const Problem& p, const FwdTensors& t);
/// Fused CPU backward (src/cpu): recomputes P from LSE, never stores N x N.
Report backward(const Problem& p, const BwdTensors& t);
/// Attention over a KV cache (src/cpu): append (+ rotary), then the queries against the cache.
Report forward_kvcache(const KvProblem& p, const KvTensors& t);
}  // namespace flatattn::cpu

namespace flatattn::cuda {
/// True when this build has the CUDA backend (FLATATTN_WITH_CUDA).
bool built();
/// CUDA forward (src/cuda), asynchronous on `stream`.
Report forward(const Problem& p, const FwdTensors& t, Stream stream);
/// CUDA backward (src/cuda), asynchronous on `stream`.
Report backward(const Problem& p, const BwdTensors& t, Stream stream);
/// Attention over a KV cache (src/cuda/decode), asynchronous on `stream`.
Report forward_kvcache(const KvProblem& p, const KvTensors& t, Stream stream);
/// flatattn::check_errors on CUDA device `device`: waits for `stream` (null: the device) and throws a pending
/// metadata violation (src/cuda/meta_check.h).
void check_errors(int device, Stream stream);
/// The dropout keep mask (flatattn::dropout_mask, validated) on CUDA device `device`, asynchronous on `stream`.
void dropout_mask(std::uint8_t* mask, int device, std::int64_t batch, std::int64_t hq, std::int64_t nq,
                  std::int64_t nk, const DropoutStream& s, Stream stream);
}  // namespace flatattn::cuda
