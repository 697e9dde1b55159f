// flatattn._C: the nanobind extension. Thin: DLPack arrays in, flatattn::forward/backward (and the fp64
// oracle) called on views of the caller's memory, flatattn::Error out as flatattn.FlatattnError.
// Outputs are allocated by the Python layer (numpy / torch / CuPy) and written in place; nothing is copied.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flatattn/flatattn.h"
#include "src/reference/reference.h"
#include "src/reference/reference_kvcache.h"
#include "views.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace flatattn::py {
namespace {

// The Python classes of flatattn/_errors.py, one per Error::Kind (registered by flatattn/__init__.py).
PyObject* g_error_class[3] = {nullptr, nullptr, nullptr};

void translate_error(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const Error& e) {
    PyObject* cls = g_error_class[static_cast<int>(e.kind())];
    if (!cls) {
      PyErr_SetString(PyExc_ValueError, e.what());
      return;
    }
    PyObject* exc = PyObject_CallFunction(cls, "ssssss", e.what(), e.argument().c_str(), e.value().c_str(),
                                          e.limit().c_str(), e.fix().c_str(), std::string(name(e.kind())).c_str());
    if (!exc) return;  // the constructor raised: leave its error set
    PyErr_SetObject(cls, exc);
    Py_DECREF(exc);
  }
}

Dataflow parse_dataflow(std::string_view s) {
  if (s == "auto") return Dataflow::automatic;
  if (s == "flash") return Dataflow::flash;
  if (s == "flat") return Dataflow::flat;
  throw Error(Error::Kind::invalid_argument, "dataflow", std::string(s), "must be 'auto', 'flash' or 'flat'",
              "pass one of the three names");
}

Options make_options(std::optional<float> softmax_scale, bool causal, bool top_left, std::int64_t window_left,
                     std::int64_t window_right, float softcap, std::string_view dataflow, int num_threads,
                     bool deterministic) {
  Options o;
  o.softmax_scale = softmax_scale;
  o.causal = causal;
  o.causal_align = top_left ? CausalAlign::top_left : CausalAlign::bottom_right;
  o.window = {window_left, window_right};
  o.softcap = softcap;
  o.dataflow = parse_dataflow(dataflow);
  o.num_threads = num_threads;
  o.deterministic = deterministic;
  return o;
}

/// Options::fp32_matmul from its Python name ("exact" or "bf16").
Fp32Matmul parse_fp32_matmul(std::string_view s) {
  if (s == "exact") return Fp32Matmul::exact;
  if (s == "bf16") return Fp32Matmul::bf16;
  throw Error(Error::Kind::invalid_argument, "fp32_matmul", std::string(s), "must be 'exact' or 'bf16'",
              "pass 'exact' (fp32 products) or 'bf16' (f32 inputs multiplied as bf16 on the CPU's matrix units)");
}

/// Dropout's options (Options::dropout_p, dropout_seed, dropout_offset, dropout_row0/col0; validated by the library).
void set_dropout(Options& o, float dropout_p, std::uint64_t seed, std::uint64_t offset, std::int64_t row0 = 0,
                 std::int64_t col0 = 0) {
  o.dropout_p = dropout_p;
  o.dropout_seed = seed;
  o.dropout_offset = offset;
  o.dropout_row0 = row0;
  o.dropout_col0 = col0;
}

/// Options::dropout_batch0, dropout_head0, dropout_heads from the Python layer's list (empty: all 0).
void set_dropout_slot(Options& o, const std::vector<std::int64_t>& slot) {
  if (slot.empty()) return;
  if (slot.size() != 3)
    throw Error(Error::Kind::invalid_argument, "dropout_slot", std::to_string(slot.size()) + " values",
                "must be (dropout_batch0, dropout_head0, dropout_heads)", "pass three ints, or nothing");
  o.dropout_batch0 = slot[0], o.dropout_head0 = slot[1], o.dropout_heads = slot[2];
}

std::optional<Varlen> make_varlen(const std::optional<In>& cu_q, const std::optional<In>& cu_k, std::int64_t max_q,
                                  std::int64_t max_k) {
  if (!cu_q && !cu_k) return std::nullopt;
  if (!cu_q || !cu_k)
    throw Error(Error::Kind::invalid_argument, cu_q ? "cu_seqlens_k" : "cu_seqlens_q", "None",
                "varlen needs both cu_seqlens_q and cu_seqlens_k", "pass both (the same tensor for self-attention)");
  Varlen v;
  v.cu_seqlens_q = view_of(*cu_q, "cu_seqlens_q");
  v.cu_seqlens_k = view_of(*cu_k, "cu_seqlens_k");
  v.max_seqlen_q = max_q;
  v.max_seqlen_k = max_k;
  return v;
}

ref::Precision parse_precision(std::string_view s) {
  if (s == "f64") return ref::Precision::f64;
  if (s == "input") return ref::Precision::input;
  throw Error(Error::Kind::invalid_argument, "precision", std::string(s), "must be 'f64' or 'input'",
              "pass 'f64' for the oracle, 'input' for naive attention in the input dtype");
}

// One signature for the kernels and the oracle: (tensors..., varlen, options..., stream or precision).
struct ForwardCall {
  ForwardArgs args;
  Options options;
};

ForwardCall forward_call(const In& q, const In& k, const In& v, const Out& out, const std::optional<Out>& lse,
                         const std::optional<In>& cu_q, const std::optional<In>& cu_k, std::int64_t max_q,
                         std::int64_t max_k, std::optional<float> scale, bool causal, bool top_left, std::int64_t wl,
                         std::int64_t wr, float softcap, std::string_view dataflow, int num_threads,
                         float dropout_p = 0.f, std::uint64_t seed = 0, std::uint64_t offset = 0) {
  ForwardCall c;
  c.args.q = view_of(q, "q");
  c.args.k = view_of(k, "k");
  c.args.v = view_of(v, "v");
  c.args.out = view_of(out, "out");
  c.args.lse = view_of(lse, "lse");
  c.args.varlen = make_varlen(cu_q, cu_k, max_q, max_k);
  c.options = make_options(scale, causal, top_left, wl, wr, softcap, dataflow, num_threads, false);
  c.options.return_lse = lse.has_value();
  set_dropout(c.options, dropout_p, seed, offset);
  return c;
}

/// ALiBi slopes and attention sinks (optional trailing arguments of forward/backward and the oracle).
using OptIn = std::optional<In>;

/// Block-sparse lists (include/flatattn/sparse.h) from the Python layer's tuple
/// (block_q, block_kv, kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices, q_num_blocks, q_indices,
///  full_q_num_blocks, full_q_indices, mask_bits, mask_block_offsets); tensors are DLPack arrays or None.
/// `keep` holds the imported arrays for the duration of the call.
std::optional<BlockSparse> block_sparse_of(const nb::object& t, std::vector<In>& keep) {
  if (t.is_none()) return std::nullopt;
  static const char* names[10] = {"kv_num_blocks", "kv_indices",        "full_kv_num_blocks", "full_kv_indices",
                                  "q_num_blocks",  "q_indices",         "full_q_num_blocks",  "full_q_indices",
                                  "mask_bits",     "mask_block_offsets"};
  const nb::tuple tup = nb::cast<nb::tuple>(t);
  if (tup.size() != 12)
    throw Error(Error::Kind::invalid_argument, "block_sparse", "a tuple of " + std::to_string(tup.size()),
                "must be (block_q, block_kv, 10 tensors or None)", "build it with flatattn.BlockSparse");
  BlockSparse bs;
  bs.block_q = nb::cast<std::int64_t>(tup[0]);
  bs.block_kv = nb::cast<std::int64_t>(tup[1]);
  TensorView* views[10] = {&bs.kv_num_blocks,     &bs.kv_indices,     &bs.full_kv_num_blocks, &bs.full_kv_indices,
                           &bs.q_num_blocks,      &bs.q_indices,      &bs.full_q_num_blocks,  &bs.full_q_indices,
                           &bs.mask_bits,         &bs.mask_block_offsets};
  keep.reserve(10);
  for (int i = 0; i < 10; ++i) {
    nb::handle h = tup[static_cast<std::size_t>(i + 2)];
    if (h.is_none()) continue;
    keep.push_back(nb::cast<In>(h));
    *views[i] = view_of(keep.back(), names[i]);
  }
  return bs;
}

/// Local + global attention (include/flatattn/sparse.h, LocalGlobal) from the Python layer's optional arrays:
/// global_positions (B', G) int32 and global_counts (B') int32; none when global_positions is None (a lone
/// global_counts is refused naming it).
std::optional<LocalGlobal> local_global_of(const OptIn& positions, const OptIn& counts) {
  if (!positions) {
    if (counts)
      throw Error(Error::Kind::invalid_argument, "local_global.global_counts", "given without global_positions",
                  "global_counts says how many of each row of global_positions are used",
                  "pass global_positions too, or drop global_counts");
    return std::nullopt;
  }
  LocalGlobal lg;
  lg.global_positions = view_of(*positions, "local_global.global_positions");
  lg.global_counts = view_of(counts, "local_global.global_counts");
  return lg;
}

Report run_forward(const In& q, const In& k, const In& v, const Out& out, const std::optional<Out>& lse,
                   const std::optional<In>& cu_q, const std::optional<In>& cu_k, std::int64_t max_q, std::int64_t max_k,
                   std::optional<float> scale, bool causal, bool top_left, std::int64_t wl, std::int64_t wr,
                   float softcap, std::string_view dataflow, int num_threads, std::uintptr_t stream,
                   const OptIn& alibi_slopes, const OptIn& sinks, float dropout_p, std::uint64_t seed,
                   std::uint64_t offset, const OptIn& bias, const nb::object& block_sparse, std::int64_t row0,
                   std::int64_t col0, std::string_view fp32_matmul, const std::vector<std::int64_t>& slot,
                   const OptIn& global_positions, const OptIn& global_counts) {
  ForwardCall c = forward_call(q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, causal, top_left, wl, wr, softcap,
                               dataflow, num_threads, dropout_p, seed, offset);
  c.options.dropout_row0 = row0, c.options.dropout_col0 = col0;
  set_dropout_slot(c.options, slot);
  c.options.fp32_matmul = parse_fp32_matmul(fp32_matmul);
  c.args.alibi_slopes = view_of(alibi_slopes, "alibi_slopes");
  c.args.sinks = view_of(sinks, "sinks");
  c.args.bias = view_of(bias, "bias");
  std::vector<In> keep;
  c.args.block_sparse = block_sparse_of(block_sparse, keep);
  c.args.local_global = local_global_of(global_positions, global_counts);
  nb::gil_scoped_release release;
  return flatattn::forward(c.args, c.options, Stream{reinterpret_cast<void*>(stream)});
}

// bench/python_overhead.py: host seconds per flatattn::forward call made from C++, the baseline against which
// the Python and torch call paths are measured. One time per repeat. On CUDA the calls are asynchronous on
// `stream` (the host cost of validation and launch); the caller synchronizes.
std::vector<double> time_forward(const In& q, const In& k, const In& v, const Out& out, const std::optional<Out>& lse,
                                 std::optional<float> scale, bool causal, std::string_view dataflow, int num_threads,
                                 std::uintptr_t stream, int repeats) {
  const ForwardCall c =
      forward_call(q, k, v, out, lse, {}, {}, 0, 0, scale, causal, false, -1, -1, 0.f, dataflow, num_threads);
  std::vector<double> t(static_cast<std::size_t>(repeats > 0 ? repeats : 0));
  nb::gil_scoped_release release;
  for (auto& s : t) {
    const auto t0 = std::chrono::steady_clock::now();
    flatattn::forward(c.args, c.options, Stream{reinterpret_cast<void*>(stream)});
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return t;
}

BackwardArgs backward_args(const In& dout, const In& q, const In& k, const In& v, const In& out, const In& lse,
                           const Out& dq, const Out& dk, const Out& dv, const std::optional<In>& cu_q,
                           const std::optional<In>& cu_k, std::int64_t max_q, std::int64_t max_k) {
  BackwardArgs a;
  a.dout = view_of(dout, "dout");
  a.q = view_of(q, "q");
  a.k = view_of(k, "k");
  a.v = view_of(v, "v");
  a.out = view_of(out, "out");
  a.lse = view_of(lse, "lse");
  a.dq = view_of(dq, "dq");
  a.dk = view_of(dk, "dk");
  a.dv = view_of(dv, "dv");
  a.varlen = make_varlen(cu_q, cu_k, max_q, max_k);
  return a;
}

Report run_backward(const In& dout, const In& q, const In& k, const In& v, const In& out, const In& lse, const Out& dq,
                const Out& dk, const Out& dv, const std::optional<In>& cu_q, const std::optional<In>& cu_k,
                std::int64_t max_q, std::int64_t max_k, std::optional<float> scale, bool causal, bool top_left,
                std::int64_t wl, std::int64_t wr, float softcap, bool deterministic, int num_threads,
                std::uintptr_t stream, const OptIn& alibi_slopes, const OptIn& sinks,
                const std::optional<Out>& dsinks, float dropout_p, std::uint64_t seed, std::uint64_t offset,
                const OptIn& bias, const std::optional<Out>& dbias, const nb::object& block_sparse,
                std::int64_t row0, std::int64_t col0, std::string_view fp32_matmul,
                const std::vector<std::int64_t>& slot, const OptIn& global_positions,
                const OptIn& global_counts) {
  BackwardArgs a = backward_args(dout, q, k, v, out, lse, dq, dk, dv, cu_q, cu_k, max_q, max_k);
  a.alibi_slopes = view_of(alibi_slopes, "alibi_slopes");
  a.sinks = view_of(sinks, "sinks");
  a.dsinks = view_of(dsinks, "dsinks");
  a.bias = view_of(bias, "bias");
  a.dbias = view_of(dbias, "dbias");
  std::vector<In> keep;
  a.block_sparse = block_sparse_of(block_sparse, keep);
  a.local_global = local_global_of(global_positions, global_counts);
  Options o = make_options(scale, causal, top_left, wl, wr, softcap, "auto", num_threads, deterministic);
  set_dropout(o, dropout_p, seed, offset, row0, col0);
  set_dropout_slot(o, slot);
  o.fp32_matmul = parse_fp32_matmul(fp32_matmul);
  nb::gil_scoped_release release;
  return flatattn::backward(a, o, Stream{reinterpret_cast<void*>(stream)});
}

void reference_forward(const In& q, const In& k, const In& v, const Out& out, const std::optional<Out>& lse,
                       const std::optional<In>& cu_q, const std::optional<In>& cu_k, std::optional<float> scale,
                       bool causal, bool top_left, std::int64_t wl, std::int64_t wr, float softcap,
                       std::string_view precision, const OptIn& alibi_slopes, const OptIn& sinks, float dropout_p,
                       std::uint64_t seed, std::uint64_t offset, const OptIn& bias,
                       const nb::object& block_sparse, std::int64_t row0, std::int64_t col0,
                       const OptIn& global_positions, const OptIn& global_counts) {
  ForwardCall c = forward_call(q, k, v, out, lse, cu_q, cu_k, 0, 0, scale, causal, top_left, wl, wr, softcap, "auto",
                               0, dropout_p, seed, offset);
  c.options.dropout_row0 = row0, c.options.dropout_col0 = col0;
  c.args.alibi_slopes = view_of(alibi_slopes, "alibi_slopes");
  c.args.sinks = view_of(sinks, "sinks");
  c.args.bias = view_of(bias, "bias");
  std::vector<In> keep;
  c.args.block_sparse = block_sparse_of(block_sparse, keep);
  c.args.local_global = local_global_of(global_positions, global_counts);
  const ref::Precision p = parse_precision(precision);
  nb::gil_scoped_release release;
  ref::forward(c.args, c.options, p);
}

void reference_backward(const In& dout, const In& q, const In& k, const In& v, const In& out, const In& lse,
                        const Out& dq, const Out& dk, const Out& dv, const std::optional<In>& cu_q,
                        const std::optional<In>& cu_k, std::optional<float> scale, bool causal, bool top_left,
                        std::int64_t wl, std::int64_t wr, float softcap, std::string_view precision,
                        const OptIn& alibi_slopes, const OptIn& sinks, const std::optional<Out>& dsinks,
                        float dropout_p, std::uint64_t seed, std::uint64_t offset, const OptIn& bias,
                        const std::optional<Out>& dbias, const nb::object& block_sparse, std::int64_t row0,
                        std::int64_t col0, const OptIn& global_positions, const OptIn& global_counts) {
  BackwardArgs a = backward_args(dout, q, k, v, out, lse, dq, dk, dv, cu_q, cu_k, 0, 0);
  a.alibi_slopes = view_of(alibi_slopes, "alibi_slopes");
  a.sinks = view_of(sinks, "sinks");
  a.dsinks = view_of(dsinks, "dsinks");
  a.bias = view_of(bias, "bias");
  a.dbias = view_of(dbias, "dbias");
  std::vector<In> keep;
  a.block_sparse = block_sparse_of(block_sparse, keep);
  a.local_global = local_global_of(global_positions, global_counts);
  Options o = make_options(scale, causal, top_left, wl, wr, softcap, "auto", 0, false);
  set_dropout(o, dropout_p, seed, offset, row0, col0);
  const ref::Precision p = parse_precision(precision);
  nb::gil_scoped_release release;
  ref::backward(a, o, p);
}

/// The arguments of a forward_kvcache call (the kernels and the oracle share them).
struct KvCall {
  KvCacheArgs args;
  Options options;
};

KvCall kvcache_call(const In& q, const Out& k_cache, const Out& v_cache, const Out& out, const std::optional<Out>& lse,
                    const In& cache_seqlens, const OptIn& block_table, const OptIn& cache_batch_idx,
                    const OptIn& cache_leftpad, const OptIn& k_new, const OptIn& v_new, const OptIn& rotary_cos,
                    const OptIn& rotary_sin, bool rotary_interleaved, const OptIn& alibi_slopes, const OptIn& sinks,
                    std::optional<float> scale, bool causal, std::int64_t wl, std::int64_t wr, float softcap,
                    int num_splits, int num_threads, const OptIn& cu_seqlens_q, std::int64_t max_seqlen_q) {
  KvCall c;
  KvCacheArgs& a = c.args;
  a.q = view_of(q, "q");
  a.cache.k_cache = view_of(k_cache, "k_cache");
  a.cache.v_cache = view_of(v_cache, "v_cache");
  a.cache.cache_seqlens = view_of(cache_seqlens, "cache_seqlens");
  a.cache.block_table = view_of(block_table, "block_table");
  a.cache.cache_batch_idx = view_of(cache_batch_idx, "cache_batch_idx");
  a.cache.cache_leftpad = view_of(cache_leftpad, "cache_leftpad");
  a.k_new = view_of(k_new, "k");
  a.v_new = view_of(v_new, "v");
  a.rotary_cos = view_of(rotary_cos, "rotary_cos");
  a.rotary_sin = view_of(rotary_sin, "rotary_sin");
  a.rotary_interleaved = rotary_interleaved;
  a.out = view_of(out, "out");
  a.lse = view_of(lse, "lse");
  a.alibi_slopes = view_of(alibi_slopes, "alibi_slopes");
  a.sinks = view_of(sinks, "sinks");
  a.num_splits = num_splits;
  a.cu_seqlens_q = view_of(cu_seqlens_q, "cu_seqlens_q");
  a.max_seqlen_q = max_seqlen_q;
  c.options = make_options(scale, causal, false, wl, wr, softcap, "auto", num_threads, false);
  c.options.return_lse = lse.has_value();
  return c;
}

Report run_forward_kvcache(const In& q, const Out& k_cache, const Out& v_cache, const Out& out,
                           const std::optional<Out>& lse, const In& cache_seqlens, const OptIn& block_table,
                           const OptIn& cache_batch_idx, const OptIn& cache_leftpad, const OptIn& k_new,
                           const OptIn& v_new, const OptIn& rotary_cos, const OptIn& rotary_sin,
                           bool rotary_interleaved, const OptIn& alibi_slopes, const OptIn& sinks,
                           std::optional<float> scale, bool causal, std::int64_t wl, std::int64_t wr, float softcap,
                           int num_splits, int num_threads, std::uintptr_t stream, const OptIn& cu_seqlens_q,
                           std::int64_t max_seqlen_q) {
  const KvCall c = kvcache_call(q, k_cache, v_cache, out, lse, cache_seqlens, block_table, cache_batch_idx,
                                cache_leftpad, k_new, v_new, rotary_cos, rotary_sin, rotary_interleaved, alibi_slopes,
                                sinks, scale, causal, wl, wr, softcap, num_splits, num_threads, cu_seqlens_q,
                                max_seqlen_q);
  nb::gil_scoped_release release;
  return flatattn::forward_kvcache(c.args, c.options, Stream{reinterpret_cast<void*>(stream)});
}

void reference_forward_kvcache(const In& q, const Out& k_cache, const Out& v_cache, const Out& out,
                               const std::optional<Out>& lse, const In& cache_seqlens, const OptIn& block_table,
                               const OptIn& cache_batch_idx, const OptIn& cache_leftpad, const OptIn& k_new,
                               const OptIn& v_new, const OptIn& rotary_cos, const OptIn& rotary_sin,
                               bool rotary_interleaved, const OptIn& alibi_slopes, const OptIn& sinks,
                               std::optional<float> scale, bool causal, std::int64_t wl, std::int64_t wr,
                               float softcap, std::string_view precision, const OptIn& cu_seqlens_q,
                               std::int64_t max_seqlen_q) {
  const KvCall c = kvcache_call(q, k_cache, v_cache, out, lse, cache_seqlens, block_table, cache_batch_idx,
                                cache_leftpad, k_new, v_new, rotary_cos, rotary_sin, rotary_interleaved, alibi_slopes,
                                sinks, scale, causal, wl, wr, softcap, 0, 0, cu_seqlens_q, max_seqlen_q);
  const ref::Precision p = parse_precision(precision);
  nb::gil_scoped_release release;
  ref::forward_kvcache(c.args, c.options, p);
}

/// flatattn::dropout_mask into a contiguous uint8 array of shape (B, Hq, Nq, Nk) on the CPU or a CUDA device.
void run_dropout_mask(nb::ndarray<std::uint8_t, nb::c_contig> mask, float dropout_p, std::uint64_t seed,
                      std::uint64_t offset, std::uintptr_t stream, std::int64_t row0, std::int64_t col0,
                      const std::vector<std::int64_t>& slot) {
  if (mask.ndim() != 4)
    throw Error(Error::Kind::invalid_argument, "mask", "rank " + std::to_string(mask.ndim()),
                "must be a contiguous uint8 array (B, Hq, Nq, Nk)", "allocate it with that shape");
  Options o;
  set_dropout(o, dropout_p, seed, offset, row0, col0);
  set_dropout_slot(o, slot);
  const Device d = device_of(mask.device_type(), mask.device_id(), "mask");
  const auto n = [&](int i) { return static_cast<std::int64_t>(mask.shape(i)); };
  nb::gil_scoped_release release;
  dropout_mask(mask.data(), d, n(0), n(1), n(2), n(3), o, Stream{reinterpret_cast<void*>(stream)});
}

}  // namespace
}  // namespace flatattn::py

NB_MODULE(_C, m) {
  using namespace flatattn;
  using namespace flatattn::py;
  m.doc() = "flatattn native extension (DLPack). Use the flatattn package, not this module directly.";
  nb::register_exception_translator(translate_error);

  m.def("_set_error_classes", [](nb::handle invalid, nb::handle unsupported, nb::handle runtime) {
    const nb::handle classes[3] = {invalid, unsupported, runtime};  // in Error::Kind order
    for (int i = 0; i < 3; ++i) {
      Py_XINCREF(classes[i].ptr());
      Py_XDECREF(g_error_class[i]);
      g_error_class[i] = classes[i].ptr();
    }
  });

  nb::class_<Report>(m, "Report", "What ran: backend, dataflow, tile sizes, kernel name.")
      .def_ro("backend", &Report::backend)
      .def_prop_ro("dataflow", [](const Report& r) { return std::string(name(r.dataflow)); })
      .def_ro("block_m", &Report::block_m)
      .def_ro("block_n", &Report::block_n)
      .def_ro("kernel", &Report::kernel)
      .def("__repr__", [](const Report& r) {
        return "Report(backend='" + r.backend + "', dataflow='" + std::string(name(r.dataflow)) +
               "', block_m=" + std::to_string(r.block_m) + ", block_n=" + std::to_string(r.block_n) + ", kernel='" +
               r.kernel + "')";
      });

  m.def("forward", &run_forward, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a.none(), "cu_seqlens_q"_a.none(),
        "cu_seqlens_k"_a.none(), "max_seqlen_q"_a, "max_seqlen_k"_a, "softmax_scale"_a.none(), "causal"_a,
        "top_left"_a, "window_left"_a, "window_right"_a, "softcap"_a, "dataflow"_a, "num_threads"_a, "stream"_a,
        "alibi_slopes"_a.none() = nb::none(), "sinks"_a.none() = nb::none(), "dropout_p"_a = 0.f, "seed"_a = 0,
        "offset"_a = 0, "bias"_a.none() = nb::none(), "block_sparse"_a.none() = nb::none(), "dropout_row0"_a = 0,
        "dropout_col0"_a = 0, "fp32_matmul"_a = "exact", "dropout_slot"_a = std::vector<std::int64_t>{},
        "global_positions"_a.none() = nb::none(), "global_counts"_a.none() = nb::none(),
        "flatattn::forward on DLPack arrays; writes out (and lse when given). Returns the Report.");
  m.def("backward", &run_backward, "dout"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "dq"_a, "dk"_a, "dv"_a,
        "cu_seqlens_q"_a.none(), "cu_seqlens_k"_a.none(), "max_seqlen_q"_a, "max_seqlen_k"_a,
        "softmax_scale"_a.none(), "causal"_a, "top_left"_a, "window_left"_a, "window_right"_a, "softcap"_a,
        "deterministic"_a, "num_threads"_a, "stream"_a, "alibi_slopes"_a.none() = nb::none(),
        "sinks"_a.none() = nb::none(), "dsinks"_a.none() = nb::none(), "dropout_p"_a = 0.f, "seed"_a = 0,
        "offset"_a = 0, "bias"_a.none() = nb::none(), "dbias"_a.none() = nb::none(),
        "block_sparse"_a.none() = nb::none(), "dropout_row0"_a = 0, "dropout_col0"_a = 0, "fp32_matmul"_a = "exact",
        "dropout_slot"_a = std::vector<std::int64_t>{}, "global_positions"_a.none() = nb::none(),
        "global_counts"_a.none() = nb::none(),
        "flatattn::backward on DLPack arrays; writes dq, dk, dv (and dsinks, dbias when given). Returns the Report.");
  m.def("_time_forward", &time_forward, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a.none(), "softmax_scale"_a.none(),
        "causal"_a, "dataflow"_a, "num_threads"_a, "stream"_a, "repeats"_a,
        "Benchmark aid: host seconds per flatattn::forward call issued from C++, one per repeat.");
  m.def("reference_forward", &reference_forward, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a.none(),
        "cu_seqlens_q"_a.none(), "cu_seqlens_k"_a.none(), "softmax_scale"_a.none(), "causal"_a, "top_left"_a,
        "window_left"_a, "window_right"_a, "softcap"_a, "precision"_a, "alibi_slopes"_a.none() = nb::none(),
        "sinks"_a.none() = nb::none(), "dropout_p"_a = 0.f, "seed"_a = 0, "offset"_a = 0, "bias"_a.none() = nb::none(),
        "block_sparse"_a.none() = nb::none(), "dropout_row0"_a = 0, "dropout_col0"_a = 0,
        "global_positions"_a.none() = nb::none(), "global_counts"_a.none() = nb::none(),
        "The fp64 oracle (src/reference) on CPU arrays; outputs may be float64.");
  m.def("reference_backward", &reference_backward, "dout"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "dq"_a,
        "dk"_a, "dv"_a, "cu_seqlens_q"_a.none(), "cu_seqlens_k"_a.none(), "softmax_scale"_a.none(), "causal"_a,
        "top_left"_a, "window_left"_a, "window_right"_a, "softcap"_a, "precision"_a,
        "alibi_slopes"_a.none() = nb::none(), "sinks"_a.none() = nb::none(), "dsinks"_a.none() = nb::none(),
        "dropout_p"_a = 0.f, "seed"_a = 0, "offset"_a = 0, "bias"_a.none() = nb::none(), "dbias"_a.none() = nb::none(),
        "block_sparse"_a.none() = nb::none(), "dropout_row0"_a = 0, "dropout_col0"_a = 0,
        "global_positions"_a.none() = nb::none(), "global_counts"_a.none() = nb::none(),
        "Exact gradients of the oracle on CPU arrays; outputs may be float64.");
  m.def(
      "forward_flops",
      [](std::int64_t b, std::int64_t nq, std::int64_t nk, std::int64_t hq, std::int64_t d, bool causal, bool top_left,
         std::int64_t wl, std::int64_t wr) {
        return flatattn::forward_flops(b, nq, nk, hq, d, make_options({}, causal, top_left, wl, wr, 0.f, "auto", 0, false));
      },
      "batch"_a, "nq"_a, "nk"_a, "hq"_a, "d"_a, "causal"_a = false, "top_left"_a = false, "window_left"_a = -1,
      "window_right"_a = -1, "FLOPs of a forward pass: 4 * visible (query, key) pairs * D * Hq (FlashAttention papers).");
  m.def("dropout_mask", &run_dropout_mask, "mask"_a, "dropout_p"_a, "seed"_a, "offset"_a, "stream"_a,
        "dropout_row0"_a = 0, "dropout_col0"_a = 0, "dropout_slot"_a = std::vector<std::int64_t>{},
        "flatattn::dropout_mask: the keep mask (1 kept, 0 dropped) into a contiguous uint8 (B, Hq, Nq, Nk) array.");
  m.def("forward_kvcache", &run_forward_kvcache, "q"_a, "k_cache"_a, "v_cache"_a, "out"_a, "lse"_a.none(),
        "cache_seqlens"_a, "block_table"_a.none(), "cache_batch_idx"_a.none(), "cache_leftpad"_a.none(), "k"_a.none(),
        "v"_a.none(), "rotary_cos"_a.none(), "rotary_sin"_a.none(), "rotary_interleaved"_a, "alibi_slopes"_a.none(),
        "sinks"_a.none(), "softmax_scale"_a.none(), "causal"_a, "window_left"_a, "window_right"_a, "softcap"_a,
        "num_splits"_a, "num_threads"_a, "stream"_a, "cu_seqlens_q"_a.none() = nb::none(), "max_seqlen_q"_a = 0,
        "flatattn::forward_kvcache on DLPack arrays: appends k/v into the caches, writes out (and lse when given); "
        "with cu_seqlens_q, varlen queries (total_q, Hq, D) over the cache (paged prefill, no append).");
  m.def("reference_forward_kvcache", &reference_forward_kvcache, "q"_a, "k_cache"_a, "v_cache"_a, "out"_a,
        "lse"_a.none(), "cache_seqlens"_a, "block_table"_a.none(), "cache_batch_idx"_a.none(),
        "cache_leftpad"_a.none(), "k"_a.none(), "v"_a.none(), "rotary_cos"_a.none(), "rotary_sin"_a.none(),
        "rotary_interleaved"_a, "alibi_slopes"_a.none(), "sinks"_a.none(), "softmax_scale"_a.none(), "causal"_a,
        "window_left"_a, "window_right"_a, "softcap"_a, "precision"_a, "cu_seqlens_q"_a.none() = nb::none(),
        "max_seqlen_q"_a = 0,
        "The fp64 oracle of forward_kvcache on CPU arrays (appends into the caches); outputs may be float64.");
  m.def("cuda_built", &cuda_built, "True when the library was built with its CUDA backend.");
  m.attr("__version__") = FLATATTN_VERSION;
}
