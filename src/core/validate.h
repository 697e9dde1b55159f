// Argument validation: the only place that turns public arguments into a Problem.
// Every check throws flatattn::Error naming the argument, its value, the limit and the fix,
// before any output is touched.
#pragma once

#include "flatattn/attention.h"
#include "src/core/problem.h"

namespace flatattn {

/// Who is asking: the kernels accept one storage dtype (f32/f16/bf16) for all tensors; the fp64
/// oracle accepts any float dtype per tensor (f64 included), so tests can ask for fp64 outputs.
enum class Consumer { kernel, oracle };

struct ValidatedForward {
  Problem problem;
  FwdTensors tensors;
};

struct ValidatedBackward {
  Problem problem;
  BwdTensors tensors;
};

ValidatedForward validate_forward(const ForwardArgs& args, const Options& options,
                                  Consumer consumer = Consumer::kernel);
ValidatedBackward validate_backward(const BackwardArgs& args, const Options& options,
                                    Consumer consumer = Consumer::kernel);

/// The block-sparse lists and local + global positions of a call (src/core/validate_sparse.cc) into
/// p.sparse; p's shapes, device and mask must be filled (check_inputs, check_options). backward: the call
/// needs the transposed q lists (given, or derived on the host).
void check_sparse(const std::optional<BlockSparse>& bs, const std::optional<LocalGlobal>& lg, const Options& o,
                  bool backward, Problem& p);

/// The dropout stream's numbering of a call of `batch` sequences of `hq` query heads (Options::dropout_batch0,
/// dropout_head0, dropout_heads), validated: heads is the stream's Hq (the counter's multiplier) and bh0 =
/// batch0 * heads + head0 is added to the call's slot b * heads + h (src/core/philox.h).
struct DropoutSlot {
  std::int64_t heads = 1, bh0 = 0;
};
DropoutSlot check_dropout_slot(const Options& o, std::int64_t batch, std::int64_t hq);

/// Throws Error(invalid_argument, argument, value, limit, fix) unless cond.
void require(bool cond, const std::string& argument, const std::string& value, const std::string& limit,
             const std::string& fix);

/// require() whose message parts are evaluated only when the check fails: validation runs on every
/// call, so the passing path must not build strings (it cost ~20 us per call when it did).
#define FLATATTN_REQUIRE(cond, argument, value, limit, fix)                                            \
  do {                                                                                                 \
    if (!(cond)) throw ::flatattn::Error(::flatattn::Error::Kind::invalid_argument, argument, value, limit, fix); \
  } while (0)

/// The per-view checks of validate.cc, shared with the KV-cache validation (src/core/validate_kvcache.cc).
namespace vcheck {
std::string shape_str(const TensorView& t);
std::string dev_str(const Device& d);
/// Present, rank, non-negative shape/strides, contiguous last dim, data pointer (layout names the shape).
void view(const TensorView& t, const char* name, int rank, const char* layout);
/// t's dtype is `want` (kernel consumer).
void dtype(const TensorView& t, const char* name, DType want);
void device(const TensorView& t, const char* name, const Device& want);
/// The stride of dim i, 0 where the dim has extent <= 1 (never used).
std::int64_t used_stride(const TensorView& t, int i);
/// Options (scale, softcap, dropout, window, causal, threads) for a problem of hq heads of dim d into `p`.
void options(const Options& o, std::int64_t hq, std::int64_t d, Problem& p);
/// out like q, lse (B, Hq, Nq) fp32 iff return_lse, ALiBi slopes and sinks (check_alibi/check_sinks) for a
/// batched problem with q (B, Nq, Hq, D); p.variant gets the slopes.
void outputs_and_extras(const TensorView& q, const TensorView& out, const TensorView& lse, bool return_lse,
                        const TensorView& alibi, const TensorView& sinks, Problem& p);
/// The same for varlen queries q (total_q, Hq, D) of `batch` sequences: out like q, lse (Hq, total_q).
void outputs_and_extras_varlen(const TensorView& q, std::int64_t batch, const TensorView& out, const TensorView& lse,
                               bool return_lse, const TensorView& alibi, const TensorView& sinks, Problem& p);
}  // namespace vcheck

}  // namespace flatattn
