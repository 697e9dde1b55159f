#include "src/core/validate.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <sstream>
#include <string>
#include <vector>

namespace flatattn {

void require(bool cond, const std::string& argument, const std::string& value, const std::string& limit,
             const std::string& fix) {
  if (!cond) throw Error(Error::Kind::invalid_argument, argument, value, limit, fix);
}

namespace {

std::string shape_str(const TensorView& t) {
  std::ostringstream s;
  s << "(";
  for (int i = 0; i < t.rank; ++i) s << (i ? ", " : "") << t.shape[i];
  s << ")";
  return s.str();
}

std::string stride_str(const TensorView& t) {
  std::ostringstream s;
  s << "(";
  for (int i = 0; i < t.rank; ++i) s << (i ? ", " : "") << t.stride[i];
  s << ")";
  return s.str();
}

std::string dev_str(const Device& d) {
  return std::string(name(d.kind)) + (d.kind == DeviceKind::cuda ? ":" + std::to_string(d.index) : "");
}

bool is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64; }

/// Common checks on one view: present, expected rank, non-negative shape and strides, contiguous last dim.
void check_view(const TensorView& t, const char* name, int rank, const char* layout) {
  FLATATTN_REQUIRE(t.rank != -1, name, "a strided view whose stride list length differs from its shape",
          "shape and stride must have the same number of dims", "pass one stride per dimension");
  FLATATTN_REQUIRE(t.present(), name, "absent", std::string("required, shape ") + layout, "pass a tensor view");
  FLATATTN_REQUIRE(t.rank == rank, name, "rank " + std::to_string(t.rank) + " " + shape_str(t),
          "rank must be " + std::to_string(rank) + ": " + layout,
          rank == 4 ? "pass a 4-D (B, N, H, D) view (or give cu_seqlens for varlen 3-D input)"
                    : "pass a 3-D packed (total, H, D) view for varlen");
  for (int i = 0; i < t.rank; ++i)
    FLATATTN_REQUIRE(t.shape[i] >= 0, name, "shape " + shape_str(t), "dimensions must be >= 0", "fix the shape");
  // The stride of a dim of extent <= 1 is never multiplied by a nonzero index, and an empty tensor has no
  // element to address: exporters (DLPack) report anything there, so only the strides that matter are checked.
  const bool empty = t.numel() == 0;
  for (int i = 0; i < t.rank; ++i)
    FLATATTN_REQUIRE(empty || t.shape[i] <= 1 || t.stride[i] >= 0, name, "strides " + stride_str(t),
            "strides must be >= 0 (in elements)", "pass a view with non-negative strides (copy a flipped tensor first)");
  FLATATTN_REQUIRE(empty || t.stride[t.rank - 1] == 1 || t.shape[t.rank - 1] <= 1, name, "strides " + stride_str(t),
          "the last dim (D) must be contiguous (stride 1)", "make the head dim contiguous (e.g. .contiguous())");
  FLATATTN_REQUIRE(t.data != nullptr || t.numel() == 0, name, "null data pointer with " + std::to_string(t.numel()) +
          " elements", "data must point to the tensor", "pass the buffer's address");
}

void check_dtype(const TensorView& t, const char* name, DType want, Consumer c) {
  if (c == Consumer::oracle) {
    FLATATTN_REQUIRE(is_float(t.dtype), name, std::string("dtype ") + std::string(flatattn::name(t.dtype)),
            "must be a float dtype (f64, f32, f16, bf16)", "pass a float tensor");
    return;
  }
  FLATATTN_REQUIRE(t.dtype == want, name, std::string("dtype ") + std::string(flatattn::name(t.dtype)),
          std::string("must match q's dtype ") + std::string(flatattn::name(want)),
          "convert all of q, k, v and the outputs to one dtype");
}

void check_device(const TensorView& t, const char* name, const Device& want) {
  FLATATTN_REQUIRE(t.device == want, name, "device " + dev_str(t.device),
          "all tensors must be on q's device " + dev_str(want), "move the tensor to " + dev_str(want));
}

void check_shape(const TensorView& t, const char* name, std::initializer_list<std::int64_t> want,
                 const char* layout) {
  TensorView w;
  w.rank = static_cast<int>(want.size());
  int i = 0;
  for (auto s : want) w.shape[i++] = s;
  bool ok = t.rank == w.rank;
  for (int d = 0; ok && d < w.rank; ++d) ok = t.shape[d] == w.shape[d];
  FLATATTN_REQUIRE(ok, name, "shape " + shape_str(t), std::string("must be ") + shape_str(w) + " " + layout,
          "allocate it with the expected shape");
}

/// Stride i of t, 0 where dim i has extent <= 1 (its stride is never used: see check_view), so a size-1 dim's
/// arbitrary exporter stride cannot make a view look misaligned (CUDA's kernel_addressable) or negative.
std::int64_t used_stride(const TensorView& t, int i) { return t.shape[i] <= 1 ? 0 : t.stride[i]; }
RowStrides rows4(const TensorView& t) { return {used_stride(t, 0), used_stride(t, 1), used_stride(t, 2)}; }
RowStrides rows3(const TensorView& t) { return {0, used_stride(t, 0), used_stride(t, 1)}; }

struct Shapes {
  std::int64_t batch, nq, nk, hq, hkv, d, total_q, total_k;
  bool varlen;
  DType dtype;
  Device device;
};

/// Checks q, k, v, cu_seqlens and the options; fills the problem.
Shapes check_inputs(const TensorView& q, const TensorView& k, const TensorView& v,
                    const std::optional<Varlen>& varlen, Consumer c, Problem& p) {
  const bool vl = varlen.has_value();
  const int rank = vl ? 3 : 4;
  const char* ql = vl ? "(total_q, Hq, D)" : "(B, Nq, Hq, D)";
  const char* kl = vl ? "(total_k, Hkv, D)" : "(B, Nk, Hkv, D)";
  check_view(q, "q", rank, ql);
  check_view(k, "k", rank, kl);
  check_view(v, "v", rank, kl);
  if (c == Consumer::kernel) {
    FLATATTN_REQUIRE(q.dtype == DType::f32 || q.dtype == DType::f16 || q.dtype == DType::bf16, "q",
            std::string("dtype ") + std::string(name(q.dtype)), "must be f32, f16 or bf16",
            "convert q, k, v to f16/bf16 (or f32 on the CPU)");
  }
  check_dtype(k, "k", q.dtype, c);
  check_dtype(v, "v", q.dtype, c);
  check_device(k, "k", q.device);
  check_device(v, "v", q.device);
  Shapes s{};
  s.varlen = vl;
  s.dtype = q.dtype;
  s.device = q.device;
  const int o = vl ? 0 : 1;  // dim offset of (N, H, D)
  s.hq = q.shape[o + 1];
  s.d = q.shape[o + 2];
  s.hkv = k.shape[o + 1];
  FLATATTN_REQUIRE(s.d >= 1, "q", "head dim D = " + std::to_string(s.d), "D must be >= 1", "pass a non-empty head dim");
  FLATATTN_REQUIRE(s.hq >= 1, "q", "Hq = " + std::to_string(s.hq), "Hq must be >= 1", "pass at least one head");
  FLATATTN_REQUIRE(s.hkv >= 1, "k", "Hkv = " + std::to_string(s.hkv), "Hkv must be >= 1", "pass at least one kv head");
  FLATATTN_REQUIRE(s.hq % s.hkv == 0, "k", "Hkv = " + std::to_string(s.hkv) + " with Hq = " + std::to_string(s.hq),
          "Hq must be a multiple of Hkv (GQA/MQA)", "use Hkv dividing Hq, or repeat k/v heads");
  FLATATTN_REQUIRE(k.shape[o + 2] == s.d, "k", "shape " + shape_str(k) + ", D = " + std::to_string(k.shape[o + 2]),
          "k's head dim must equal q's D = " + std::to_string(s.d), "project q and k to the same head dim");
  FLATATTN_REQUIRE(v.shape[o + 2] == s.d, "v", "shape " + shape_str(v) + ", Dv = " + std::to_string(v.shape[o + 2]),
          "Dv must equal D = " + std::to_string(s.d) + " (Dv != D is not supported yet)",
          "pad v to D or use D = Dv");
  FLATATTN_REQUIRE(v.shape[o + 1] == s.hkv && v.shape[0] == k.shape[0] && (vl || v.shape[1] == k.shape[1]), "v",
          "shape " + shape_str(v), "must equal k's shape " + shape_str(k), "pass v with k's shape");
  if (!vl) {
    s.batch = q.shape[0];
    s.nq = q.shape[1];
    s.nk = k.shape[1];
    FLATATTN_REQUIRE(k.shape[0] == s.batch, "k", "batch " + std::to_string(k.shape[0]),
            "must equal q's batch B = " + std::to_string(s.batch), "pass k with q's batch size");
    s.total_q = s.batch * s.nq;
    s.total_k = s.batch * s.nk;
  } else {
    const Varlen& w = *varlen;
    s.total_q = q.shape[0];
    s.total_k = k.shape[0];
    for (auto [t, nm] : {std::pair{&w.cu_seqlens_q, "cu_seqlens_q"}, std::pair{&w.cu_seqlens_k, "cu_seqlens_k"}}) {
      FLATATTN_REQUIRE(t->present() && t->rank == 1, nm, t->present() ? "rank " + std::to_string(t->rank) : "absent",
              "must be a 1-D int32 tensor of B + 1 offsets", "pass cumulative sequence lengths");
      FLATATTN_REQUIRE(t->dtype == DType::i32, nm, std::string("dtype ") + std::string(name(t->dtype)), "must be i32",
              "convert to int32");
      FLATATTN_REQUIRE(t->stride[0] == 1 || t->shape[0] <= 1, nm, "stride " + std::to_string(t->stride[0]),
              "must be contiguous", "pass a contiguous tensor");
      FLATATTN_REQUIRE(t->shape[0] >= 1, nm, "length 0", "must hold B + 1 >= 1 offsets", "start it with 0");
      FLATATTN_REQUIRE(t->data != nullptr, nm, "null data pointer", "must point to B + 1 int32 offsets", "pass the buffer");
      check_device(*t, nm, q.device);
    }
    FLATATTN_REQUIRE(w.cu_seqlens_k.shape[0] == w.cu_seqlens_q.shape[0], "cu_seqlens_k",
            "length " + std::to_string(w.cu_seqlens_k.shape[0]),
            "must equal len(cu_seqlens_q) = " + std::to_string(w.cu_seqlens_q.shape[0]), "pass B + 1 offsets for both");
    s.batch = w.cu_seqlens_q.shape[0] - 1;
    FLATATTN_REQUIRE(w.max_seqlen_q >= 0, "max_seqlen_q", std::to_string(w.max_seqlen_q), "must be >= 0", "pass the longest length");
    FLATATTN_REQUIRE(w.max_seqlen_k >= 0, "max_seqlen_k", std::to_string(w.max_seqlen_k), "must be >= 0", "pass the longest length");
    s.nq = w.max_seqlen_q;
    s.nk = w.max_seqlen_k;
    if (q.device.kind == DeviceKind::cpu) {  // contents are readable: check them, derive max lengths
      for (auto [t, total, mx, nm] :
           {std::tuple{&w.cu_seqlens_q, s.total_q, &s.nq, "cu_seqlens_q"},
            std::tuple{&w.cu_seqlens_k, s.total_k, &s.nk, "cu_seqlens_k"}}) {
        const auto* cu = static_cast<const std::int32_t*>(t->data);
        FLATATTN_REQUIRE(cu[0] == 0, nm, "cu[0] = " + std::to_string(cu[0]), "must start at 0", "prepend 0");
        std::int64_t longest = 0;
        for (std::int64_t b = 0; b < s.batch; ++b) {
          FLATATTN_REQUIRE(cu[b + 1] >= cu[b], nm,
                  "cu[" + std::to_string(b + 1) + "] = " + std::to_string(cu[b + 1]) + " < cu[" + std::to_string(b) +
                      "] = " + std::to_string(cu[b]),
                  "must be non-decreasing", "pass cumulative sums of the lengths");
          longest = std::max<std::int64_t>(longest, cu[b + 1] - cu[b]);
        }
        FLATATTN_REQUIRE(cu[s.batch] <= total, nm, "last offset " + std::to_string(cu[s.batch]),
                "must be <= the packed rows " + std::to_string(total), "pass offsets into the packed tensor");
        const std::string mname = nm == std::string("cu_seqlens_q") ? "max_seqlen_q" : "max_seqlen_k";
        FLATATTN_REQUIRE(*mx == 0 || *mx >= longest, mname, std::to_string(*mx),
                "must be >= the longest sequence (" + std::to_string(longest) + ")", "pass 0 to derive it");
        *mx = longest;
      }
    } else {
      FLATATTN_REQUIRE(s.batch == 0 || (s.nq >= 1 || s.total_q == 0), "max_seqlen_q", std::to_string(s.nq),
              "required (>= 1) for CUDA varlen: it sizes the grid", "pass the longest query length");
      FLATATTN_REQUIRE(s.batch == 0 || (s.nk >= 0), "max_seqlen_k", std::to_string(s.nk), "required for CUDA varlen",
              "pass the longest key length");
    }
    p.cu_seqlens_q = static_cast<const std::int32_t*>(w.cu_seqlens_q.data);
    p.cu_seqlens_k = static_cast<const std::int32_t*>(w.cu_seqlens_k.data);
  }
  p.dtype = s.dtype;
  p.device = s.device;
  p.batch = s.batch;
  p.hq = s.hq;
  p.hkv = s.hkv;
  p.d = s.d;
  p.nq = s.nq;
  p.nk = s.nk;
  p.varlen = vl;
  p.total_q = s.total_q;
  p.total_k = s.total_k;
  return s;
}

/// Options::dropout_row0/col0 into p.variant: in [0, 2^31) with row0 + Nq, col0 + Nk <= 2^31;
/// col0 % kDropoutColAlign == 0.
void check_dropout_position(const Options& o, Problem& p) {
  constexpr std::int64_t kMax = std::int64_t{1} << 31;
  FLATATTN_REQUIRE(o.dropout_row0 >= 0 && o.dropout_row0 <= kMax - p.nq, "dropout_row0", std::to_string(o.dropout_row0),
          "must be in [0, 2^31 - Nq] (Nq = " + std::to_string(p.nq) + "): the global row of the call's first query",
          "pass the position of the first query row in the whole sequence (0 for a whole-sequence call)");
  FLATATTN_REQUIRE(o.dropout_col0 >= 0 && o.dropout_col0 <= kMax - p.nk, "dropout_col0", std::to_string(o.dropout_col0),
          "must be in [0, 2^31 - Nk] (Nk = " + std::to_string(p.nk) + "): the global column of the call's first key",
          "pass the position of the first key column in the whole sequence (0 for a whole-sequence call)");
  const std::string align = std::to_string(kDropoutColAlign);
  FLATATTN_REQUIRE(o.dropout_col0 % kDropoutColAlign == 0, "dropout_col0", std::to_string(o.dropout_col0),
          "must be a multiple of " + align + " (the dropout stream's Philox calls serve 64-key groups, src/core/philox.h)",
          "start the call's key block at a multiple of " + align + " of the whole sequence (shard keys in multiples of " +
              align + ")");
  p.variant.dropout_row0 = o.dropout_row0;
  p.variant.dropout_col0 = o.dropout_col0;
}

void check_options(const Options& o, Problem& p) {
  if (o.softmax_scale) {
    FLATATTN_REQUIRE(std::isfinite(*o.softmax_scale), "softmax_scale", std::to_string(*o.softmax_scale), "must be finite",
            "pass a finite scale or leave it unset for 1/sqrt(D)");
    p.scale = *o.softmax_scale;
  } else {
    p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.d)));
  }
  FLATATTN_REQUIRE(std::isfinite(o.softcap) && o.softcap >= 0.f, "softcap", std::to_string(o.softcap),
          "must be >= 0 and finite (0 disables)", "pass 0 or a positive cap such as 30");
  p.variant.softcap = o.softcap;
  FLATATTN_REQUIRE(std::isfinite(o.dropout_p) && o.dropout_p >= 0.f && o.dropout_p < 1.f, "dropout_p",
          std::to_string(o.dropout_p), "must be in [0, 1) (0 disables dropout)", "pass a probability such as 0.1, or 0");
  p.variant.dropout_p = o.dropout_p;
  p.variant.dropout_seed = o.dropout_seed;
  p.variant.dropout_offset = o.dropout_offset;
  p.variant.dropout_hq = p.hq;
  check_dropout_position(o, p);
  const DropoutSlot slot = check_dropout_slot(o, p.batch, p.hq);
  p.variant.dropout_hq = slot.heads;
  p.variant.dropout_bh0 = slot.bh0;
  p.fp32_matmul = o.fp32_matmul;  // served (or refused) by the backend: src/cpu/amx/detect.cc, dispatch.cc
  FLATATTN_REQUIRE(o.window.left >= -1, "window.left", std::to_string(o.window.left), "must be >= -1 (-1: unbounded)",
          "pass -1 or a non-negative size");
  FLATATTN_REQUIRE(o.window.right >= -1, "window.right", std::to_string(o.window.right), "must be >= -1 (-1: unbounded)",
          "pass -1 or a non-negative size");
  FLATATTN_REQUIRE(!o.causal || o.window.right <= 0, "window.right", std::to_string(o.window.right),
          "must be -1 or 0 with causal (causal sees no key right of the diagonal)",
          "drop causal, or set window.right to -1 or 0");
  FLATATTN_REQUIRE(o.num_threads >= 0, "num_threads", std::to_string(o.num_threads), "must be >= 0 (0: all cores)",
          "pass 0 or a positive count");
  p.mask = mask_spec(o);
  p.dataflow = o.dataflow;
  p.num_threads = o.num_threads;
  p.deterministic = o.deterministic;
}

void check_like(const TensorView& t, const char* name, const TensorView& like, const char* like_name,
                const Shapes& s, Consumer c, const char* layout) {
  check_view(t, name, like.rank, layout);
  check_dtype(t, name, s.dtype, c);
  check_device(t, name, s.device);
  bool ok = true;
  for (int i = 0; i < like.rank; ++i) ok = ok && t.shape[i] == like.shape[i];
  FLATATTN_REQUIRE(ok, name, "shape " + shape_str(t), std::string("must equal ") + like_name + "'s shape " + shape_str(like),
          std::string("allocate it like ") + like_name);
}

/// dq, dk, dv like q, k, v; or, with 16-bit inputs, all three float32 (their sum over several calls is then rounded
/// once by the caller: ring attention's per-hop gradients; on CUDA with D a multiple of 8 and 16-byte aligned rows,
/// src/cuda/check_args.cc). Returns their dtype.
DType check_grads(const BackwardArgs& a, const Shapes& s, Consumer c, const char* ql, const char* kl) {
  Shapes g = s;
  if (c == Consumer::kernel && s.dtype != DType::f32 && a.dq.present() && a.dq.dtype == DType::f32)
    g.dtype = DType::f32;  // the CPU engine and the CUDA kernels store their fp32 values unrounded
  check_like(a.dq, "dq", a.q, "q", g, c, ql);
  check_like(a.dk, "dk", a.k, "k", g, c, kl);
  check_like(a.dv, "dv", a.v, "v", g, c, kl);
  return g.dtype;
}

void check_lse(const TensorView& lse, const Shapes& s, const char* name, Consumer c) {
  const char* layout = s.varlen ? "(Hq, total_q) f32" : "(B, Hq, Nq) f32";
  FLATATTN_REQUIRE(lse.rank != -1, name, "a strided view whose stride list length differs from its shape",
          "shape and stride must have the same number of dims", "pass one stride per dimension");
  FLATATTN_REQUIRE(lse.present(), name, "absent", std::string("required, shape ") + layout, "pass an f32 tensor");
  FLATATTN_REQUIRE(lse.dtype == DType::f32 || (c == Consumer::oracle && lse.dtype == DType::f64), name,
          std::string("dtype ") + std::string(flatattn::name(lse.dtype)), "must be f32", "allocate LSE as float32");
  check_device(lse, name, s.device);
  if (s.varlen) {
    check_shape(lse, name, {s.hq, s.total_q}, layout);
  } else {
    check_shape(lse, name, {s.batch, s.hq, s.nq}, layout);
  }
  for (int i = 0; i < lse.rank; ++i)
    FLATATTN_REQUIRE(lse.numel() == 0 || lse.shape[i] <= 1 || lse.stride[i] >= 0, name, "strides " + stride_str(lse),
            "strides must be >= 0", "pass a plain view");
  FLATATTN_REQUIRE(lse.data != nullptr || lse.numel() == 0, name, "null data pointer", "must point to the LSE buffer",
          "pass the buffer");
}

/// A small fp32 per-head tensor of the features (ALiBi slopes, sinks, dsinks): dtype, device, data.
void check_head_vector(const TensorView& t, const char* name, const Shapes& s, const char* layout, Consumer c) {
  FLATATTN_REQUIRE(t.rank != -1, name, "a strided view whose stride list length differs from its shape",
          "shape and stride must have the same number of dims", "pass one stride per dimension");
  FLATATTN_REQUIRE(t.dtype == DType::f32 || (c == Consumer::oracle && t.dtype == DType::f64), name, std::string("dtype ") + std::string(flatattn::name(t.dtype)),
          std::string("must be f32 ") + layout, "convert it to float32");
  check_device(t, name, s.device);
  FLATATTN_REQUIRE(t.data != nullptr || t.numel() == 0, name, "null data pointer", std::string("must point to ") + layout,
          "pass the buffer");
  FLATATTN_REQUIRE(t.stride[t.rank - 1] == 1 || t.shape[t.rank - 1] <= 1, name, "strides " + stride_str(t),
          "the head dim must be contiguous (stride 1)", "pass a contiguous tensor (.contiguous())");
}

/// ALiBi slopes (Hq) or (B, Hq) into p.variant; refused with softcap or dropout (check_options ran first).
void check_alibi(const TensorView& t, const Shapes& s, Consumer c, Problem& p) {
  if (!t.present() && t.rank != -1) return;
  const char* layout = "(Hq) or (B, Hq)";
  const bool ok = (t.rank == 1 && t.shape[0] == s.hq) || (t.rank == 2 && t.shape[0] == s.batch && t.shape[1] == s.hq);
  FLATATTN_REQUIRE(t.rank == -1 || ok, "alibi_slopes", "shape " + shape_str(t),
          "must be (Hq) = (" + std::to_string(s.hq) + ") or (B, Hq) = (" + std::to_string(s.batch) + ", " +
              std::to_string(s.hq) + ") fp32",
          "pass one slope per query head (and per sequence for (B, Hq))");
  check_head_vector(t, "alibi_slopes", s, layout, c);
  FLATATTN_REQUIRE(t.rank == 1 || (t.stride[0] >= 0 && t.stride[0] <= 0x7fffffff), "alibi_slopes",
          "strides " + stride_str(t), "the batch stride must be in [0, 2^31)", "pass a contiguous (B, Hq) tensor");
  if (p.variant.softcap > 0.f)
    throw Error(Error::Kind::unsupported, "alibi_slopes", "given with softcap " + std::to_string(p.variant.softcap),
                "ALiBi and softcap together are not supported (no model uses both; no kernel is built for it)",
                "drop softcap or the ALiBi slopes");
  if (p.variant.dropout_p > 0.f)
    throw Error(Error::Kind::unsupported, "alibi_slopes", "given with dropout_p " + std::to_string(p.variant.dropout_p),
                "ALiBi and dropout together are not supported yet (no kernel is built for the combination)",
                "train without attention dropout, or drop the ALiBi slopes");
  p.variant.alibi_slopes = static_cast<const float*>(t.data);
  p.variant.alibi_stride_b = t.rank == 2 ? t.stride[0] : 0;
}

/// Attention sinks (Hq) (or their gradient, same shape).
void check_sinks(const TensorView& t, const char* name, const Shapes& s, Consumer c) {
  const char* layout = "(Hq)";
  FLATATTN_REQUIRE(t.rank == -1 || (t.rank == 1 && t.shape[0] == s.hq), name, "shape " + shape_str(t),
          "must be (Hq) = (" + std::to_string(s.hq) + ") fp32", "pass one sink logit per query head");
  check_head_vector(t, name, s, layout, c);
}

/// The additive bias (name "bias") or its gradient ("dbias"): rank 4 (Bb, Hb, Mq, Nk) broadcastable to
/// (B, Hq, Nq, Nk), f32/f16/bf16 (the oracle also f64), on q's device, last dim contiguous, strides >= 0.
/// Returns the used strides (0 for size-1 dims).
BiasGrad check_bias_view(const TensorView& t, const char* name, const Shapes& s, Consumer c) {
  const std::string want = "(Bb, Hb, Mq, Nk) with Bb in {1, " + std::to_string(s.batch) + "}, Hb in {1, " +
                           std::to_string(s.hq) + "}, Mq in {1, " + std::to_string(s.nq) + "}, Nk = " +
                           std::to_string(s.nk) + (s.varlen ? " (varlen: B sequences, max_seqlen_q, max_seqlen_k)" : "");
  FLATATTN_REQUIRE(t.rank != -1, name, "a strided view whose stride list length differs from its shape",
          "shape and stride must have the same number of dims", "pass one stride per dimension");
  const bool ok = t.rank == 4 && (t.shape[0] == 1 || t.shape[0] == s.batch) && (t.shape[1] == 1 || t.shape[1] == s.hq) &&
                  (t.shape[2] == 1 || t.shape[2] == s.nq) && t.shape[3] == s.nk;
  FLATATTN_REQUIRE(ok, name, "shape " + shape_str(t), "must be broadcastable to (B, Hq, Nq, Nk): " + want,
          "pass a 4-D bias; expand a missing dim as size 1 (the key dim must be full)");
  FLATATTN_REQUIRE(t.dtype == DType::f32 || t.dtype == DType::f16 || t.dtype == DType::bf16 ||
                       (c == Consumer::oracle && t.dtype == DType::f64),
          name, std::string("dtype ") + std::string(flatattn::name(t.dtype)), "must be f32, f16 or bf16",
          "convert the bias to one of them");
  check_device(t, name, s.device);
  const bool empty = t.numel() == 0;
  for (int i = 0; i < 4; ++i)
    FLATATTN_REQUIRE(empty || t.shape[i] <= 1 || t.stride[i] >= 0, name, "strides " + stride_str(t),
            "strides must be >= 0 (in elements)", "pass a plain view");
  FLATATTN_REQUIRE(empty || t.shape[3] <= 1 || t.stride[3] == 1, name, "strides " + stride_str(t),
          "the key dim (last) must be contiguous (stride 1)", "make it contiguous (e.g. .contiguous())");
  FLATATTN_REQUIRE(t.data != nullptr || empty, name, "null data pointer", "must point to the bias", "pass the buffer");
  BiasGrad g;
  g.data = t.data;
  g.dtype = t.dtype;
  g.nb = t.shape[0], g.nh = t.shape[1], g.nq = t.shape[2], g.nk = t.shape[3];
  g.sb = used_stride(t, 0), g.sh = used_stride(t, 1), g.si = used_stride(t, 2);
  return g;
}

/// The additive bias into p.variant; refused with softcap, ALiBi or dropout (check_options and check_alibi ran).
void check_bias(const TensorView& t, const Shapes& s, Consumer c, Problem& p) {
  if (!t.present() && t.rank != -1) return;
  const BiasGrad g = check_bias_view(t, "bias", s, c);
  if (p.variant.softcap > 0.f)
    throw Error(Error::Kind::unsupported, "bias", "given with softcap " + std::to_string(p.variant.softcap),
                "a bias with softcap is not supported (HF Gemma 2 adds its mask after the cap, SDPA before: no one "
                "definition, and no kernel is built for it)",
                "drop softcap, or add the bias outside the kernel");
  if (p.variant.alibi_slopes != nullptr)
    throw Error(Error::Kind::unsupported, "bias", "given with alibi_slopes",
                "a bias with ALiBi is not supported (one score hook per call)",
                "fold the ALiBi term -slope |i + Nk - Nq - j| into the bias, or drop one");
  if (p.variant.dropout_p > 0.f)
    throw Error(Error::Kind::unsupported, "bias", "given with dropout_p " + std::to_string(p.variant.dropout_p),
                "a bias with dropout is not supported yet (no kernel is built for the combination)",
                "train without attention dropout, or drop the bias");
  if (t.numel() == 0) return;  // nothing to add (an empty problem)
  p.variant.bias = g.data;
  p.variant.bias_dtype = g.dtype;
  p.variant.bias_sb = g.sb, p.variant.bias_sh = g.sh, p.variant.bias_si = g.si;
  p.variant.bias_nq = s.nq, p.variant.bias_nk = s.nk;
}

RowStrides lse_strides(const TensorView& lse, bool varlen) {
  return varlen ? RowStrides{0, used_stride(lse, 1), used_stride(lse, 0)}
                : RowStrides{used_stride(lse, 0), used_stride(lse, 2), used_stride(lse, 1)};
}

}  // namespace

DropoutSlot check_dropout_slot(const Options& o, std::int64_t batch, std::int64_t hq) {
  constexpr std::int64_t kMax = std::int64_t{1} << 31;
  const std::int64_t heads = o.dropout_heads == 0 ? hq : o.dropout_heads;
  FLATATTN_REQUIRE(o.dropout_batch0 >= 0 && o.dropout_batch0 < kMax, "dropout_batch0", std::to_string(o.dropout_batch0),
          "must be in [0, 2^31): the stream's index of the call's first sequence",
          "pass the sequence's (varlen: document's) index in the whole batch, or 0");
  FLATATTN_REQUIRE(o.dropout_heads >= 0 && o.dropout_heads < kMax, "dropout_heads", std::to_string(o.dropout_heads),
          "must be in [0, 2^31) (0: the call's Hq)", "pass the query head count of the whole problem, or 0");
  FLATATTN_REQUIRE(o.dropout_head0 >= 0 && o.dropout_head0 <= heads - hq, "dropout_head0", std::to_string(o.dropout_head0),
          "must be in [0, dropout_heads - Hq] (dropout_heads " + std::to_string(heads) + ", Hq " + std::to_string(hq) +
              "): the call's heads are heads head0 .. head0 + Hq - 1 of the stream",
          "pass the stream's index of the call's first query head and dropout_heads = the full Hq");
  FLATATTN_REQUIRE((o.dropout_batch0 + batch) * heads <= kMax, "dropout_batch0", std::to_string(o.dropout_batch0),
          "(dropout_batch0 + B) * dropout_heads must be <= 2^31 (B " + std::to_string(batch) + ", heads " +
              std::to_string(heads) + "; the counter's third word)",
          "split the batch or number the sequences from 0");
  return {heads, o.dropout_batch0 * heads + o.dropout_head0};
}

ValidatedForward validate_forward(const ForwardArgs& a, const Options& o, Consumer c) {
  ValidatedForward r;
  Problem& p = r.problem;
  const Shapes s = check_inputs(a.q, a.k, a.v, a.varlen, c, p);
  check_options(o, p);
  check_like(a.out, "out", a.q, "q", s, c, s.varlen ? "(total_q, Hq, D)" : "(B, Nq, Hq, D)");
  if (o.return_lse) {
    check_lse(a.lse, s, "lse", c);
  } else {
    FLATATTN_REQUIRE(!a.lse.present(), "lse", "given", "return_lse is false, so lse would not be written",
            "set Options::return_lse = true, or pass no lse view");
  }
  check_alibi(a.alibi_slopes, s, c, p);
  if (a.sinks.present() || a.sinks.rank == -1) check_sinks(a.sinks, "sinks", s, c);
  check_bias(a.bias, s, c, p);
  check_sparse(a.block_sparse, a.local_global, o, false, p);
  FwdTensors& t = r.tensors;
  t.sinks = a.sinks.present() ? static_cast<const float*>(a.sinks.data) : nullptr;
  t.q = a.q.data;
  t.k = a.k.data;
  t.v = a.v.data;
  t.o = a.out.data;
  auto rs = s.varlen ? rows3 : rows4;
  t.sq = rs(a.q);
  t.sk = rs(a.k);
  t.sv = rs(a.v);
  t.so = rs(a.out);
  if (o.return_lse) {
    t.lse = static_cast<float*>(a.lse.data);
    t.slse = lse_strides(a.lse, s.varlen);
  }
  return r;
}

ValidatedBackward validate_backward(const BackwardArgs& a, const Options& o, Consumer c) {
  ValidatedBackward r;
  Problem& p = r.problem;
  const Shapes s = check_inputs(a.q, a.k, a.v, a.varlen, c, p);
  check_options(o, p);
  const char* ql = s.varlen ? "(total_q, Hq, D)" : "(B, Nq, Hq, D)";
  const char* kl = s.varlen ? "(total_k, Hkv, D)" : "(B, Nk, Hkv, D)";
  check_like(a.out, "out", a.q, "q", s, c, ql);
  check_like(a.dout, "dout", a.q, "q", s, c, ql);
  const DType grad_dtype = check_grads(a, s, c, ql, kl);
  check_lse(a.lse, s, "lse", c);
  check_alibi(a.alibi_slopes, s, c, p);
  if (a.sinks.present() || a.sinks.rank == -1) check_sinks(a.sinks, "sinks", s, c);
  if (a.dsinks.present() || a.dsinks.rank == -1) {
    check_sinks(a.dsinks, "dsinks", s, c);
    FLATATTN_REQUIRE(a.sinks.present(), "dsinks", "given without sinks", "the sinks' gradient needs the sinks",
            "pass the forward's sinks too, or no dsinks");
  }
  check_bias(a.bias, s, c, p);
  check_sparse(a.block_sparse, a.local_global, o, true, p);
  BwdTensors& t = r.tensors;
  if (a.dbias.present() || a.dbias.rank == -1) {
    FLATATTN_REQUIRE(a.bias.present(), "dbias", "given without bias", "the bias's gradient needs the bias",
            "pass the forward's bias too, or no dbias");
    const BiasGrad g = check_bias_view(a.dbias, "dbias", s, c);
    const bool same = g.nb == a.bias.shape[0] && g.nh == a.bias.shape[1] && g.nq == a.bias.shape[2] &&
                      g.nk == a.bias.shape[3];
    FLATATTN_REQUIRE(same, "dbias", "shape " + shape_str(a.dbias), "must equal bias's shape " + shape_str(a.bias),
            "allocate dbias like the bias");
    FLATATTN_REQUIRE(g.dtype == a.bias.dtype || c == Consumer::oracle, "dbias",
            std::string("dtype ") + std::string(flatattn::name(g.dtype)),
            std::string("must be the bias's dtype ") + std::string(flatattn::name(a.bias.dtype)), "allocate dbias like the bias");
    FLATATTN_REQUIRE(g.data != a.bias.data || a.dbias.numel() == 0, "dbias", "the bias's own memory",
            "dbias must not alias the bias (the backward reads the bias while it writes dbias)",
            "pass a separate buffer");
    t.dbias = g;
  }
  t.sinks = a.sinks.present() ? static_cast<const float*>(a.sinks.data) : nullptr;
  t.dsinks = a.dsinks.present() ? static_cast<float*>(a.dsinks.data) : nullptr;
  auto rs = s.varlen ? rows3 : rows4;
  t.dout = a.dout.data;
  t.q = a.q.data;
  t.k = a.k.data;
  t.v = a.v.data;
  t.o = a.out.data;
  t.lse = static_cast<const float*>(a.lse.data);
  t.dq = a.dq.data;
  t.dk = a.dk.data;
  t.dv = a.dv.data;
  t.sdo = rs(a.dout);
  t.sq = rs(a.q);
  t.sk = rs(a.k);
  t.sv = rs(a.v);
  t.so = rs(a.out);
  t.slse = lse_strides(a.lse, s.varlen);
  t.sdq = rs(a.dq);
  t.sdk = rs(a.dk);
  t.sdv = rs(a.dv);
  t.grad_dtype = grad_dtype;
  return r;
}

namespace vcheck {

std::string shape_str(const TensorView& t) { return flatattn::shape_str(t); }
std::string dev_str(const Device& d) { return flatattn::dev_str(d); }
void view(const TensorView& t, const char* name, int rank, const char* layout) { check_view(t, name, rank, layout); }
void dtype(const TensorView& t, const char* name, DType want) { check_dtype(t, name, want, Consumer::kernel); }
void device(const TensorView& t, const char* name, const Device& want) { check_device(t, name, want); }
std::int64_t used_stride(const TensorView& t, int i) { return flatattn::used_stride(t, i); }

void options(const Options& o, std::int64_t hq, std::int64_t d, Problem& p) {
  p.hq = hq;
  p.d = d;
  check_options(o, p);
}

namespace {
/// out like q (shape text `layout`), lse iff return_lse, ALiBi slopes and sinks, for the shapes in s.
void outputs_and_extras_of(const Shapes& s, const TensorView& q, const TensorView& out, const TensorView& lse,
                           bool return_lse, const TensorView& alibi, const TensorView& sinks, const char* layout,
                           Problem& p) {
  check_like(out, "out", q, "q", s, Consumer::kernel, layout);
  if (return_lse) {
    check_lse(lse, s, "lse", Consumer::kernel);
  } else {
    FLATATTN_REQUIRE(!lse.present(), "lse", "given", "return_lse is false, so lse would not be written",
            "set Options::return_lse = true, or pass no lse view");
  }
  check_alibi(alibi, s, Consumer::kernel, p);
  if (sinks.present() || sinks.rank == -1) check_sinks(sinks, "sinks", s, Consumer::kernel);
}
}  // namespace

void outputs_and_extras(const TensorView& q, const TensorView& out, const TensorView& lse, bool return_lse,
                        const TensorView& alibi, const TensorView& sinks, Problem& p) {
  Shapes s{};
  s.batch = q.shape[0];
  s.nq = q.shape[1];
  s.hq = q.shape[2];
  s.d = q.shape[3];
  s.varlen = false;
  s.dtype = q.dtype;
  s.device = q.device;
  outputs_and_extras_of(s, q, out, lse, return_lse, alibi, sinks, "(B, Nq, Hq, D)", p);
}

void outputs_and_extras_varlen(const TensorView& q, std::int64_t batch, const TensorView& out, const TensorView& lse,
                               bool return_lse, const TensorView& alibi, const TensorView& sinks, Problem& p) {
  Shapes s{};
  s.batch = batch;
  s.total_q = q.shape[0];
  s.hq = q.shape[1];
  s.d = q.shape[2];
  s.varlen = true;
  s.dtype = q.dtype;
  s.device = q.device;
  outputs_and_extras_of(s, q, out, lse, return_lse, alibi, sinks, "(total_q, Hq, D)", p);
}

}  // namespace vcheck

}  // namespace flatattn
