// validate_kvcache(): the only place that turns KvCacheArgs (include/flatattn/kvcache.h) into a KvProblem.
// Every check throws flatattn::Error naming the argument, its value, the limit and the fix before anything
// is written: the append writes the cache, so all checks (on the CPU the metadata values too) finish here,
// before a backend runs.
#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "src/core/kv_problem.h"
#include "src/core/validate.h"

namespace flatattn {

namespace {

using vcheck::shape_str;
using std::to_string;

bool is_storage_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

/// An int32 (B) metadata vector: rank 1, length B, i32, contiguous, on q's device.
void check_meta_vector(const TensorView& t, const char* name, std::int64_t batch, const Device& dev) {
  FLATATTN_REQUIRE(t.rank == 1, name, t.rank == -1 ? "a view whose stride list differs from its shape" : "rank " + to_string(t.rank),
          "must be a 1-D int32 tensor (B) = (" + to_string(batch) + ")", "pass one int32 per sequence");
  FLATATTN_REQUIRE(t.dtype == DType::i32, name, std::string("dtype ") + std::string(flatattn::name(t.dtype)),
          "must be i32", "convert it to int32");
  FLATATTN_REQUIRE(t.shape[0] == batch, name, "shape " + shape_str(t), "must be (B) = (" + to_string(batch) + ")",
          "pass one entry per sequence of q");
  FLATATTN_REQUIRE(t.stride[0] == 1 || t.shape[0] <= 1, name, "stride " + to_string(t.stride[0]), "must be contiguous",
          "pass a contiguous tensor (.contiguous())");
  FLATATTN_REQUIRE(t.data != nullptr || batch == 0, name, "null data pointer", "must point to B int32 values",
          "pass the buffer");
  vcheck::device(t, name, dev);
}

/// Like q's layout (B, N, Hkv, D) for the new keys/values.
void check_new(const TensorView& t, const char* name, const TensorView& q, std::int64_t hkv, std::int64_t d,
               std::int64_t nnew) {
  vcheck::view(t, name, 4, "(B, Nnew, Hkv, D)");
  vcheck::dtype(t, name, q.dtype);
  vcheck::device(t, name, q.device);
  const bool ok = t.shape[0] == q.shape[0] && t.shape[1] == nnew && t.shape[2] == hkv && t.shape[3] == d;
  FLATATTN_REQUIRE(ok, name, "shape " + shape_str(t),
          "must be (B, Nnew, Hkv, D) = (" + to_string(q.shape[0]) + ", " + to_string(nnew) + ", " + to_string(hkv) +
              ", " + to_string(d) + ") (k_new and v_new alike; Hkv and D of the cache)",
          "pass the new keys/values of every sequence with the cache's heads and head dim");
}

/// Options that forward() has and a KV-cache call does not.
void check_kv_options(const Options& o) {
  if (o.dropout_p > 0.f)
    throw Error(Error::Kind::unsupported, "dropout_p", to_string(o.dropout_p),
                "forward_kvcache is inference: dropout is not supported", "pass dropout_p = 0");
  if (o.causal_align != CausalAlign::bottom_right)
    throw Error(Error::Kind::unsupported, "causal_align", "top_left",
                "forward_kvcache aligns the queries to the end of the keys (bottom_right only)",
                "use CausalAlign::bottom_right (the new queries are the last tokens of each sequence)");
  if (o.dataflow != Dataflow::automatic)
    throw Error(Error::Kind::unsupported, "dataflow", std::string(name(o.dataflow)),
                "forward_kvcache chooses its decode kernel itself (num_splits steers the split-KV)",
                "leave Options::dataflow automatic");
}

/// Varlen: 0 = cu[0] <= cu[1] <= ... <= cu[B] <= total_q, every Nq_b <= the bound p.nq (max_seqlen_q).
void check_cu_seqlens_q(const KvProblem& p) {
  const std::int32_t* cu = p.cu_seqlens_q;
  FLATATTN_REQUIRE(cu[0] == 0, "cu_seqlens_q", "cu_seqlens_q[0] = " + to_string(cu[0]), "must start at 0",
          "pass the cumulative query lengths, starting with 0");
  for (std::int64_t b = 0; b < p.batch; ++b) {
    FLATATTN_REQUIRE(cu[b + 1] >= cu[b], "cu_seqlens_q",
            "cu_seqlens_q[" + to_string(b + 1) + "] = " + to_string(cu[b + 1]) + " < cu_seqlens_q[" + to_string(b) +
                "] = " + to_string(cu[b]),
            "must be non-decreasing", "pass the cumulative sums of the query lengths");
  }
  FLATATTN_REQUIRE(cu[p.batch] <= p.total_q, "cu_seqlens_q",
          "cu_seqlens_q[" + to_string(p.batch) + "] = " + to_string(cu[p.batch]),
          "must be <= the packed query rows total_q = " + to_string(p.total_q), "pass offsets into q's first dim");
  // With the offsets in range every length is <= total_q: only a max_seqlen_q below a length fails here.
  for (std::int64_t b = 0; b < p.batch; ++b)
    FLATATTN_REQUIRE(cu[b + 1] - cu[b] <= p.nq, "max_seqlen_q",
            to_string(p.nq) + " with Nq_" + to_string(b) + " = " + to_string(cu[b + 1] - cu[b]),
            "must be >= every query length cu_seqlens_q[b+1] - cu_seqlens_q[b]", "pass the longest query length, or 0");
}

/// The CPU checks of the metadata values (CUDA reads them on the device: kvcache.h). No write before.
void check_metadata_values(const KvProblem& p) {
  if (p.varlen()) check_cu_seqlens_q(p);
  const std::int64_t cap = p.capacity();
  std::vector<std::int64_t> targets;  // physical rows (page * page_size + row) the append writes
  if (p.nnew > 0) targets.reserve(static_cast<std::size_t>(p.batch * p.nnew));
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t sl = p.cache_seqlens[b];
    const std::string at = "[" + to_string(b) + "]";
    FLATATTN_REQUIRE(sl >= 0, "cache_seqlens", "cache_seqlens" + at + " = " + to_string(sl), "must be >= 0",
            "pass the number of tokens already in the cache");
    FLATATTN_REQUIRE(sl + p.nnew <= cap, "cache_seqlens",
            "cache_seqlens" + at + " = " + to_string(sl) + " with Nnew = " + to_string(p.nnew),
            "cache_seqlens[b] + Nnew must be <= the capacity " + to_string(cap) +
                (p.paged ? " (max_pages * page_size = " + to_string(p.max_pages) + " * " + to_string(p.page_size) + ")"
                         : " (k_cache.shape[1])"),
            p.paged ? "give the sequence more block_table columns (pages)" : "allocate a longer cache");
    const std::int64_t lp = p.cache_leftpad ? p.cache_leftpad[b] : 0;
    FLATATTN_REQUIRE(lp >= 0 && lp <= sl, "cache_leftpad", "cache_leftpad" + at + " = " + to_string(lp),
            "must be in [0, cache_seqlens[b]] = [0, " + to_string(sl) + "]",
            "pass the first valid cache position of each sequence");
    const std::int64_t nk = sl + p.nnew;
    if (p.paged) {
      const std::int32_t* row = p.block_table + b * p.block_table_stride;
      for (std::int64_t pg = lp / p.page_size; pg * p.page_size < nk; ++pg)
        FLATATTN_REQUIRE(row[pg] >= 0 && row[pg] < p.num_pages, "block_table",
                "block_table[" + to_string(b) + ", " + to_string(pg) + "] = " + to_string(row[pg]),
                "a page this call reads or writes must be in [0, num_pages) = [0, " + to_string(p.num_pages) + ")",
                "pass valid page indices (entries past the sequence's last page are not read)");
    } else if (p.cache_batch_idx) {
      const std::int32_t r = p.cache_batch_idx[b];
      FLATATTN_REQUIRE(r >= 0 && r < p.num_pages, "cache_batch_idx", "cache_batch_idx" + at + " = " + to_string(r),
              "must be in [0, B_cache) = [0, " + to_string(p.num_pages) + ")", "pass rows of k_cache");
    }
    if (p.rotary_dim > 0) {
      const bool per_query = p.mask.masked();
      const std::int64_t last = sl + std::max<std::int64_t>(p.nnew, per_query ? p.nq : 1) - 1;
      FLATATTN_REQUIRE(last < p.rotary_max_position, "rotary_cos",
              "rotary rows " + to_string(p.rotary_max_position) + ", but sequence " + to_string(b) +
                  " rotates position " + to_string(last),
              "must have a row for every rotated position (cache_seqlens[b] + max(Nnew, Nq or 1))",
              "build rotary_cos/rotary_sin for at least max position + 1 rows");
    }
    for (std::int64_t t = 0; t < p.nnew; ++t) {
      const std::int64_t pos = sl + t, pg = pos / p.page_size;
      const std::int64_t page = p.paged ? p.block_table[b * p.block_table_stride + pg]
                                        : (p.cache_batch_idx ? p.cache_batch_idx[b] : b);
      targets.push_back(page * p.page_size + pos % p.page_size);
    }
  }
  if (targets.size() > 1) {
    std::sort(targets.begin(), targets.end());
    const auto dup = std::adjacent_find(targets.begin(), targets.end());
    FLATATTN_REQUIRE(dup == targets.end(), p.paged ? "block_table" : "cache_batch_idx",
            dup == targets.end() ? "" : "two sequences append to the same cache row (page " +
                to_string(*dup / p.page_size) + ", row " + to_string(*dup % p.page_size) + ")",
            "the rows appended by one call must be distinct (pages may be shared only where they are read)",
            "give each sequence its own page (or cache row) for its new tokens");
  }
}

}  // namespace

ValidatedKvCache validate_kvcache(const KvCacheArgs& a, const Options& o) {
  ValidatedKvCache r;
  KvProblem& p = r.problem;
  KvTensors& t = r.tensors;
  const KvCache& c = a.cache;

  // q: (B, Nq, Hq, D), or varlen (total_q, Hq, D) with cu_seqlens_q (B + 1).
  const bool vl = a.cu_seqlens_q.present() || a.cu_seqlens_q.rank == -1;
  if (vl) {
    vcheck::view(a.q, "q", 3, "(total_q, Hq, D) (varlen: cu_seqlens_q is given)");
  } else {
    vcheck::view(a.q, "q", 4, "(B, Nq, Hq, D)");
  }
  const bool cuda = a.q.device.kind == DeviceKind::cuda;
  FLATATTN_REQUIRE(is_storage_float(a.q.dtype) && !(cuda && a.q.dtype == DType::f32), "q",
          std::string("dtype ") + std::string(name(a.q.dtype)),
          cuda ? "must be f16 or bf16 on CUDA" : "must be f32, f16 or bf16",
          cuda ? "convert q, the cache and the new k/v to f16/bf16" : "convert q, the cache and the new k/v");
  p.dtype = a.q.dtype;
  p.device = a.q.device;
  if (vl) {
    const TensorView& cu = a.cu_seqlens_q;
    FLATATTN_REQUIRE(cu.rank == 1, "cu_seqlens_q", cu.rank == -1 ? "a view whose stride list differs from its shape" : "rank " + to_string(cu.rank),
            "must be a 1-D int32 tensor of B + 1 offsets", "pass the cumulative query lengths");
    FLATATTN_REQUIRE(cu.dtype == DType::i32, "cu_seqlens_q", std::string("dtype ") + std::string(name(cu.dtype)),
            "must be i32", "convert it to int32");
    FLATATTN_REQUIRE(cu.shape[0] >= 1, "cu_seqlens_q", "length 0", "must hold B + 1 >= 1 offsets", "start it with 0");
    FLATATTN_REQUIRE(cu.stride[0] == 1 || cu.shape[0] <= 1, "cu_seqlens_q", "stride " + to_string(cu.stride[0]),
            "must be contiguous", "pass a contiguous tensor (.contiguous())");
    FLATATTN_REQUIRE(cu.data != nullptr, "cu_seqlens_q", "null data pointer", "must point to B + 1 int32 offsets",
            "pass the buffer");
    vcheck::device(cu, "cu_seqlens_q", p.device);
    FLATATTN_REQUIRE(a.max_seqlen_q >= 0, "max_seqlen_q", to_string(a.max_seqlen_q), "must be >= 0 (0: total_q)",
            "pass the longest query length, or 0");
    p.batch = cu.shape[0] - 1;
    p.total_q = a.q.shape[0];
    p.hq = a.q.shape[1];
    p.d = a.q.shape[2];
    // The bound on every Nq_b: no sequence can hold more than total_q rows.
    p.nq = a.max_seqlen_q > 0 ? std::min<std::int64_t>(a.max_seqlen_q, p.total_q) : p.total_q;
    p.cu_seqlens_q = static_cast<const std::int32_t*>(cu.data);
  } else {
    p.batch = a.q.shape[0];
    p.nq = a.q.shape[1];
    p.hq = a.q.shape[2];
    p.d = a.q.shape[3];
    FLATATTN_REQUIRE(p.nq >= 1, "q", "Nq = " + to_string(p.nq), "Nq must be >= 1 (one or more new query tokens)",
            "pass at least one query token per sequence");
  }
  FLATATTN_REQUIRE(p.hq >= 1, "q", "Hq = " + to_string(p.hq), "Hq must be >= 1", "pass at least one head");
  FLATATTN_REQUIRE(p.d >= 1, "q", "head dim D = " + to_string(p.d), "D must be >= 1", "pass a non-empty head dim");

  // The cache: (num_pages, page_size, Hkv, D) or (B_cache, capacity, Hkv, D).
  p.paged = c.block_table.present() || c.block_table.rank == -1;
  const char* cl = p.paged ? "(num_pages, page_size, Hkv, D)" : "(B_cache, capacity, Hkv, D)";
  vcheck::view(c.k_cache, "k_cache", 4, cl);
  vcheck::view(c.v_cache, "v_cache", 4, cl);
  vcheck::dtype(c.k_cache, "k_cache", p.dtype);
  vcheck::dtype(c.v_cache, "v_cache", p.dtype);
  vcheck::device(c.k_cache, "k_cache", p.device);
  vcheck::device(c.v_cache, "v_cache", p.device);
  p.hkv = c.k_cache.shape[2];
  FLATATTN_REQUIRE(p.hkv >= 1, "k_cache", "Hkv = " + to_string(p.hkv), "Hkv must be >= 1", "pass at least one kv head");
  FLATATTN_REQUIRE(p.hq % p.hkv == 0, "k_cache", "Hkv = " + to_string(p.hkv) + " with Hq = " + to_string(p.hq),
          "Hq must be a multiple of Hkv (GQA/MQA)", "use Hkv dividing Hq");
  FLATATTN_REQUIRE(c.k_cache.shape[3] == p.d, "k_cache", "shape " + shape_str(c.k_cache) + ", D = " + to_string(c.k_cache.shape[3]),
          "the cache's head dim must equal q's D = " + to_string(p.d), "project q and the cache to the same head dim");
  bool same = true;
  for (int i = 0; i < 4; ++i) same = same && c.v_cache.shape[i] == c.k_cache.shape[i];
  FLATATTN_REQUIRE(same, "v_cache", "shape " + shape_str(c.v_cache), "must equal k_cache's shape " + shape_str(c.k_cache),
          "allocate v_cache like k_cache");
  p.num_pages = c.k_cache.shape[0];
  p.page_size = c.k_cache.shape[1];
  FLATATTN_REQUIRE(p.page_size >= 1, "k_cache", "page_size (shape[1]) = " + to_string(p.page_size),
          p.paged ? "page_size must be >= 1" : "the capacity must be >= 1", "allocate at least one token per page");
  t.skc = {vcheck::used_stride(c.k_cache, 0), vcheck::used_stride(c.k_cache, 1), vcheck::used_stride(c.k_cache, 2)};
  t.svc = {vcheck::used_stride(c.v_cache, 0), vcheck::used_stride(c.v_cache, 1), vcheck::used_stride(c.v_cache, 2)};
  t.k_cache = c.k_cache.data;
  t.v_cache = c.v_cache.data;

  // Metadata.
  FLATATTN_REQUIRE(c.cache_seqlens.present() || c.cache_seqlens.rank == -1, "cache_seqlens", "absent",
          "required: int32 (B), the tokens already in each sequence's cache", "pass cache_seqlens");
  check_meta_vector(c.cache_seqlens, "cache_seqlens", p.batch, p.device);
  p.cache_seqlens = static_cast<const std::int32_t*>(c.cache_seqlens.data);
  if (p.paged) {
    const TensorView& bt = c.block_table;
    FLATATTN_REQUIRE(bt.rank == 2, "block_table", bt.rank == -1 ? "a view whose stride list differs from its shape" : "rank " + to_string(bt.rank),
            "must be a 2-D int32 tensor (B, max_pages)", "pass one row of page indices per sequence");
    FLATATTN_REQUIRE(bt.dtype == DType::i32, "block_table", std::string("dtype ") + std::string(name(bt.dtype)), "must be i32",
            "convert it to int32");
    FLATATTN_REQUIRE(bt.shape[0] == p.batch && bt.shape[1] >= 1, "block_table", "shape " + shape_str(bt),
            "must be (B, max_pages) with B = " + to_string(p.batch) + " and max_pages >= 1",
            "pass one row of at least one page per sequence");
    FLATATTN_REQUIRE(bt.stride[1] == 1 || bt.shape[1] <= 1, "block_table", "strides (" + to_string(bt.stride[0]) + ", " +
            to_string(bt.stride[1]) + ")", "the last dim must be contiguous", "pass a contiguous block_table");
    FLATATTN_REQUIRE(bt.shape[0] <= 1 || bt.stride[0] >= 0, "block_table", "row stride " + to_string(bt.stride[0]),
            "must be >= 0", "pass a contiguous block_table");
    FLATATTN_REQUIRE(bt.data != nullptr || p.batch == 0, "block_table", "null data pointer",
            "must point to B * max_pages int32", "pass the buffer");
    vcheck::device(bt, "block_table", p.device);
    FLATATTN_REQUIRE(!c.cache_batch_idx.present(), "cache_batch_idx", "given with a block_table",
            "a paged cache addresses sequences through block_table only", "drop cache_batch_idx (permute block_table rows)");
    p.max_pages = bt.shape[1];
    p.block_table = static_cast<const std::int32_t*>(bt.data);
    p.block_table_stride = bt.shape[0] <= 1 ? bt.shape[1] : bt.stride[0];
  } else {
    p.max_pages = 1;
    if (c.cache_batch_idx.present() || c.cache_batch_idx.rank == -1) {
      check_meta_vector(c.cache_batch_idx, "cache_batch_idx", p.batch, p.device);
      p.cache_batch_idx = static_cast<const std::int32_t*>(c.cache_batch_idx.data);
    } else {
      FLATATTN_REQUIRE(p.num_pages >= p.batch, "k_cache", "B_cache = " + to_string(p.num_pages),
              "must be >= B = " + to_string(p.batch) + " without cache_batch_idx (sequence b uses cache row b)",
              "allocate a row per sequence or pass cache_batch_idx");
    }
  }
  if (c.cache_leftpad.present() || c.cache_leftpad.rank == -1) {
    check_meta_vector(c.cache_leftpad, "cache_leftpad", p.batch, p.device);
    p.cache_leftpad = static_cast<const std::int32_t*>(c.cache_leftpad.data);
  }

  // New keys and values.
  const bool kn = a.k_new.present() || a.k_new.rank == -1, vn = a.v_new.present() || a.v_new.rank == -1;
  if (vl) {
    const bool rot = a.rotary_cos.present() || a.rotary_cos.rank == -1 || a.rotary_sin.present() || a.rotary_sin.rank == -1;
    if (kn || vn || rot)
      throw Error(Error::Kind::unsupported, kn || vn ? (kn ? "k_new" : "v_new") : "rotary_cos", "given with cu_seqlens_q",
                  "varlen queries attend to the cache as it is (no append or rotary in the varlen form)",
                  "append (and rotate) with a batched forward_kvcache call first, or drop cu_seqlens_q");
  }
  FLATATTN_REQUIRE(kn == vn, kn ? "v_new" : "k_new", "absent", "k_new and v_new come together",
          "pass both new keys and new values, or neither");
  if (kn) {
    p.nnew = a.k_new.rank == 4 ? a.k_new.shape[1] : 0;
    check_new(a.k_new, "k_new", a.q, p.hkv, p.d, p.nnew);
    check_new(a.v_new, "v_new", a.q, p.hkv, p.d, p.nnew);
    if (p.nnew > 0) {
      t.k_new = a.k_new.data;
      t.v_new = a.v_new.data;
      t.sk_new = {vcheck::used_stride(a.k_new, 0), vcheck::used_stride(a.k_new, 1), vcheck::used_stride(a.k_new, 2)};
      t.sv_new = {vcheck::used_stride(a.v_new, 0), vcheck::used_stride(a.v_new, 1), vcheck::used_stride(a.v_new, 2)};
    }
  }

  // Rotary embedding.
  const bool rc = a.rotary_cos.present() || a.rotary_cos.rank == -1;
  const bool rs = a.rotary_sin.present() || a.rotary_sin.rank == -1;
  FLATATTN_REQUIRE(rc == rs, rc ? "rotary_sin" : "rotary_cos", "absent", "rotary_cos and rotary_sin come together",
          "pass both tables, or neither");
  if (rc) {
    FLATATTN_REQUIRE(kn, "rotary_cos", "given without k_new",
            "rotary embedding rotates the new keys (and q); cached keys are stored rotated (FlashAttention-2's rule)",
            "pass k_new/v_new with the rotary tables, or rotate q yourself");
    for (auto [v, nm] : {std::pair{&a.rotary_cos, "rotary_cos"}, std::pair{&a.rotary_sin, "rotary_sin"}}) {
      vcheck::view(*v, nm, 2, "(max_position, rotary_dim / 2)");
      vcheck::dtype(*v, nm, p.dtype);
      vcheck::device(*v, nm, p.device);
    }
    FLATATTN_REQUIRE(a.rotary_sin.shape[0] == a.rotary_cos.shape[0] && a.rotary_sin.shape[1] == a.rotary_cos.shape[1],
            "rotary_sin", "shape " + shape_str(a.rotary_sin), "must equal rotary_cos's shape " + shape_str(a.rotary_cos),
            "build both tables for the same positions and rotary_dim");
    const std::int64_t half = a.rotary_cos.shape[1];
    FLATATTN_REQUIRE(half >= 1 && 2 * half <= p.d, "rotary_cos", "shape " + shape_str(a.rotary_cos) + ", rotary_dim = " + to_string(2 * half),
            "rotary_dim = 2 * shape[1] must be in [2, D] = [2, " + to_string(p.d) + "] (even by construction)",
            "pass tables of rotary_dim / 2 columns");
    const std::int64_t sc = vcheck::used_stride(a.rotary_cos, 0), ss = vcheck::used_stride(a.rotary_sin, 0);
    FLATATTN_REQUIRE(sc == ss || a.rotary_cos.shape[0] <= 1, "rotary_sin", "row stride " + to_string(ss),
            "must equal rotary_cos's row stride " + to_string(sc), "pass two contiguous tables");
    p.rotary_dim = 2 * half;
    p.rotary_interleaved = a.rotary_interleaved;
    p.rotary_max_position = a.rotary_cos.shape[0];
    t.rotary_cos = a.rotary_cos.data;
    t.rotary_sin = a.rotary_sin.data;
    t.rotary_stride = a.rotary_cos.shape[0] <= 1 ? half : sc;
  }

  // Options, outputs, ALiBi, sinks, splits.
  check_kv_options(o);
  Problem fp;
  fp.batch = p.batch;
  vcheck::options(o, p.hq, p.d, fp);
  if (vl) {
    vcheck::outputs_and_extras_varlen(a.q, p.batch, a.out, a.lse, o.return_lse, a.alibi_slopes, a.sinks, fp);
  } else {
    vcheck::outputs_and_extras(a.q, a.out, a.lse, o.return_lse, a.alibi_slopes, a.sinks, fp);
  }
  p.scale = fp.scale;
  p.variant = fp.variant;
  p.mask = fp.mask;
  p.mask.bottom_right = true;
  p.num_threads = fp.num_threads;
  FLATATTN_REQUIRE(a.num_splits >= 0, "num_splits", to_string(a.num_splits), "must be >= 0 (0: the planner chooses)",
          "pass 0 or a positive split count");
  p.num_splits = a.num_splits;

  t.q = a.q.data;
  t.o = a.out.data;
  if (vl) {  // rows of the packed dim; no batch term (kv_problem.h)
    t.sq = {0, vcheck::used_stride(a.q, 0), vcheck::used_stride(a.q, 1)};
    t.so = {0, vcheck::used_stride(a.out, 0), vcheck::used_stride(a.out, 1)};
  } else {
    t.sq = {vcheck::used_stride(a.q, 0), vcheck::used_stride(a.q, 1), vcheck::used_stride(a.q, 2)};
    t.so = {vcheck::used_stride(a.out, 0), vcheck::used_stride(a.out, 1), vcheck::used_stride(a.out, 2)};
  }
  if (o.return_lse) {
    t.lse = static_cast<float*>(a.lse.data);
    t.slse = vl ? RowStrides{0, vcheck::used_stride(a.lse, 1), vcheck::used_stride(a.lse, 0)}
                : RowStrides{vcheck::used_stride(a.lse, 0), vcheck::used_stride(a.lse, 2), vcheck::used_stride(a.lse, 1)};
  }
  t.sinks = a.sinks.present() ? static_cast<const float*>(a.sinks.data) : nullptr;

  if (p.device.kind == DeviceKind::cpu) check_metadata_values(p);
  return r;
}

}  // namespace flatattn
