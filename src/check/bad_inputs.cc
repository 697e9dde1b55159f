#include "src/check/bad_inputs.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "flatattn/error.h"

namespace flatattn::check {

namespace {

using C = BadInputCall;

DType other_half(DType t) { return t == DType::f16 ? DType::bf16 : DType::f16; }
Device other_device(Device d) { return d.kind == DeviceKind::cpu ? Device::cuda(0) : Device::cpu(); }

/// cu_seqlens with the given host contents (host_metadata rows: CPU only), in storage that outlives the call.
TensorView host_offsets(std::vector<std::int32_t> v) {
  thread_local std::vector<std::int32_t> keep;
  keep = std::move(v);
  return TensorView::contiguous(keep.data(), DType::i32, {static_cast<std::int64_t>(keep.size())});
}

// clang-format off
const BadInput kRows[] = {
  // ---- forward: shapes, ranks, strides
  {"q_rank",           "q",     false, false, false, [](C& c) { c.fwd.q.rank = 3; }},
  {"q_absent",         "q",     false, false, false, [](C& c) { c.fwd.q = {}; }},
  {"k_heads",          "k",     false, false, false, [](C& c) { c.fwd.k.shape[2] = 3; c.fwd.v.shape[2] = 3; }},
  {"k_head_dim",       "k",     false, false, false, [](C& c) { c.fwd.k.shape[3] = 4; }},
  {"v_head_dim",       "v",     false, false, false, [](C& c) { c.fwd.v.shape[3] = 4; }},
  {"v_length",         "v",     false, false, false, [](C& c) { c.fwd.v.shape[1] -= 1; }},
  {"k_batch",          "k",     false, false, false, [](C& c) { c.fwd.k.shape[0] = 1; c.fwd.v.shape[0] = 1; }},
  {"out_shape",        "out",   false, false, false, [](C& c) { c.fwd.out.shape[3] += 1; }},
  {"q_last_stride",    "q",     false, false, false, [](C& c) { c.fwd.q.stride[3] = 2; }},
  {"k_negative_stride", "k",    false, false, false, [](C& c) { c.fwd.k.stride[1] = -1; }},
  // ---- forward: dtypes and devices
  {"k_dtype",          "k",     false, false, false, [](C& c) { c.fwd.k.dtype = other_half(c.fwd.q.dtype); }},
  {"out_dtype",        "out",   false, false, false, [](C& c) { c.fwd.out.dtype = other_half(c.fwd.q.dtype); }},
  {"q_dtype_f64",      "q",     false, false, false, [](C& c) {
     for (TensorView* t : {&c.fwd.q, &c.fwd.k, &c.fwd.v, &c.fwd.out}) t->dtype = DType::f64; }},
  {"v_device",         "v",     false, false, false, [](C& c) { c.fwd.v.device = other_device(c.fwd.q.device); }},
  // ---- forward: lse
  {"lse_not_requested", "lse",  false, false, false, [](C& c) { c.options.return_lse = false; }},
  {"lse_absent",       "lse",   false, false, false, [](C& c) { c.fwd.lse = {}; }},
  {"lse_dtype",        "lse",   false, false, false, [](C& c) { c.fwd.lse.dtype = DType::f16; }},
  {"lse_shape",        "lse",   false, false, false, [](C& c) { c.fwd.lse.shape[c.fwd.lse.rank - 1] -= 1; }},
  // ---- options and their limits
  {"softcap_negative", "softcap", false, false, false, [](C& c) { c.options.softcap = -1.f; }},
  {"softcap_nan",      "softcap", false, false, false, [](C& c) { c.options.softcap = std::nanf(""); }},
  {"scale_nan",        "softmax_scale", false, false, false, [](C& c) { c.options.softmax_scale = std::nanf(""); }},
  {"window_left",      "window.left", false, false, false, [](C& c) { c.options.window.left = -2; }},
  {"window_right",     "window.right", false, false, false, [](C& c) { c.options.window.right = -5; }},
  {"num_threads",      "num_threads", false, false, false, [](C& c) { c.options.num_threads = -1; }},
  {"dropout_p_one",    "dropout_p", false, false, false, [](C& c) { c.options.dropout_p = 1.f; }},
  {"dropout_p_negative", "dropout_p", false, false, false, [](C& c) { c.options.dropout_p = -0.1f; }},
  {"dropout_p_nan",    "dropout_p", false, false, false, [](C& c) { c.options.dropout_p = std::nanf(""); }},
  // ---- ALiBi and sinks
  {"alibi_with_softcap", "alibi_slopes", false, false, false, [](C& c) { c.fwd.alibi_slopes = c.alibi; c.options.softcap = 5.f; }},
  {"alibi_with_dropout", "alibi_slopes", false, false, false, [](C& c) { c.fwd.alibi_slopes = c.alibi; c.options.dropout_p = 0.1f; }},
  {"alibi_dtype",      "alibi_slopes", false, false, false, [](C& c) { c.fwd.alibi_slopes = c.alibi; c.fwd.alibi_slopes.dtype = DType::f16; }},
  {"alibi_shape",      "alibi_slopes", false, false, false, [](C& c) { c.fwd.alibi_slopes = c.alibi; c.fwd.alibi_slopes.shape[0] -= 1; }},
  {"alibi_device",     "alibi_slopes", false, false, false, [](C& c) {
     c.fwd.alibi_slopes = c.alibi; c.fwd.alibi_slopes.device = other_device(c.fwd.q.device); }},
  {"sinks_dtype",      "sinks", false, false, false, [](C& c) { c.fwd.sinks = c.sinks; c.fwd.sinks.dtype = DType::f16; }},
  {"sinks_shape",      "sinks", false, false, false, [](C& c) { c.fwd.sinks = c.sinks; c.fwd.sinks.shape[0] -= 1; }},
  // ---- backward
  {"bwd_dq_absent",    "dq",    true, false, false, [](C& c) { c.bwd.dq = {}; }},
  {"bwd_lse_absent",   "lse",   true, false, false, [](C& c) { c.bwd.lse = {}; }},
  {"bwd_dk_shape",     "dk",    true, false, false, [](C& c) { c.bwd.dk.shape[1] -= 1; }},
  {"bwd_dout_dtype",   "dout",  true, false, false, [](C& c) { c.bwd.dout.dtype = other_half(c.bwd.q.dtype); }},
  {"bwd_dv_stride",    "dv",    true, false, false, [](C& c) { c.bwd.dv.stride[3] = 3; }},
  {"bwd_dq_device",    "dq",    true, false, false, [](C& c) { c.bwd.dq.device = other_device(c.bwd.q.device); }},
  {"bwd_dsinks_without_sinks", "dsinks", true, false, false, [](C& c) { c.bwd.sinks = {}; c.bwd.dsinks = c.dsinks; }},
  {"bwd_dsinks_dtype", "dsinks", true, false, false, [](C& c) {
     c.bwd.sinks = c.sinks; c.bwd.dsinks = c.dsinks; c.bwd.dsinks.dtype = DType::f16; }},
  {"bwd_dropout_p",    "dropout_p", true, false, false, [](C& c) { c.options.dropout_p = 1.5f; }},
  {"bwd_softcap",      "softcap", true, false, false, [](C& c) { c.options.softcap = -3.f; }},
  // ---- varlen
  {"varlen_cu_q_dtype", "cu_seqlens_q", false, true, false, [](C& c) { c.fwd.varlen->cu_seqlens_q.dtype = DType::f32; }},
  {"varlen_cu_k_length", "cu_seqlens_k", false, true, false, [](C& c) { c.fwd.varlen->cu_seqlens_k.shape[0] = 2; }},
  {"varlen_q_rank",    "q",     false, true, false, [](C& c) { c.fwd.q.rank = 4; }},
  {"varlen_lse_shape", "lse",   false, true, false, [](C& c) { c.fwd.lse.shape[1] -= 1; }},
  {"varlen_bwd_cu_k_dtype", "cu_seqlens_k", true, true, false, [](C& c) { c.bwd.varlen->cu_seqlens_k.dtype = DType::f64; }},
  // contents of cu_seqlens / max_seqlen: checked before the call on the CPU (on CUDA by the kernels: tests/cuda
  // test_metadata.cc)
  {"varlen_cu_q_start", "cu_seqlens_q", false, true, true, [](C& c) {
     const auto n = c.fwd.varlen->cu_seqlens_q.shape[0];
     std::vector<std::int32_t> v(static_cast<std::size_t>(n), static_cast<std::int32_t>(c.fwd.q.shape[0]));
     v[0] = 1;
     c.fwd.varlen->cu_seqlens_q = host_offsets(v); }},
  {"varlen_cu_q_decreasing", "cu_seqlens_q", false, true, true, [](C& c) {
     const auto n = c.fwd.varlen->cu_seqlens_q.shape[0];
     std::vector<std::int32_t> v(static_cast<std::size_t>(n), static_cast<std::int32_t>(c.fwd.q.shape[0]));
     v[0] = 0, v[1] = static_cast<std::int32_t>(c.fwd.q.shape[0]), v[2] = 0;
     c.fwd.varlen->cu_seqlens_q = host_offsets(v); }},
  {"varlen_max_seqlen_q", "max_seqlen_q", false, true, true, [](C& c) { c.fwd.varlen->max_seqlen_q = 1; }},
};
// clang-format on

}  // namespace

std::span<const BadInput> bad_inputs() { return kRows; }

std::string run_bad_input(const BadInput& r, const BadInputCall& valid, Stream stream, std::string& what) {
  BadInputCall c = valid;
  r.brk(c);
  try {
    if (r.backward) {
      backward(c.bwd, c.options, stream);
    } else {
      forward(c.fwd, c.options, stream);
    }
  } catch (const Error& e) {
    what = e.what();
    return e.argument();
  }
  what = "no error";
  return "";
}

}  // namespace flatattn::check
