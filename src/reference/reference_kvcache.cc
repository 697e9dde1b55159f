#include "src/reference/reference_kvcache.h"

#include <memory>
#include <vector>

#include "src/core/half.h"
#include "src/core/kv_problem.h"
#include "src/core/rotary.h"
#include "src/core/validate.h"
#include "src/reference/parallel.h"

namespace flatattn::ref {

namespace {

/// A contiguous host buffer of doubles or of a storage dtype, with its tensor view.
struct Buffer {
  std::vector<double> storage;  // the elements' bytes, in doubles (8-byte aligned)
  TensorView view;
  Buffer(DType dtype, std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t d)
      : storage(static_cast<std::size_t>((a * b * c * d * static_cast<std::int64_t>(element_size(dtype)) + 7) / 8) + 1) {
    view = TensorView::contiguous(storage.data(), dtype, {a, b, c, d});
  }
};

/// A view of rows [b, b + 1) of a 4-D (or 3-D / 2-D) tensor: the same strides, dim 0 of extent 1.
TensorView slice0(const TensorView& t, std::int64_t b) {
  TensorView s = t;
  s.data = static_cast<char*>(t.data) + b * t.stride[0] * static_cast<std::int64_t>(element_size(t.dtype));
  s.shape[0] = 1;
  return s;
}

/// Element offset of (key position pos, head h) of sequence b in a cache of strides s (kv_problem.h's rule).
std::int64_t cache_offset(const KvProblem& p, const PageStrides& s, std::int64_t b, std::int64_t pos, std::int64_t h) {
  const std::int64_t page = p.paged ? p.block_table[b * p.block_table_stride + pos / p.page_size]
                                    : (p.cache_batch_idx ? p.cache_batch_idx[b] : b);
  return page * s.page + (pos % p.page_size) * s.row + h * s.h;
}

/// Varlen: rows [q0, q0 + n) of a packed (total_q, Hq, D) tensor as a (1, n, Hq, D) view.
TensorView rows4(const TensorView& t, std::int64_t q0, std::int64_t n) {
  TensorView s = t;
  s.data = static_cast<char*>(t.data) + q0 * t.stride[0] * static_cast<std::int64_t>(element_size(t.dtype));
  s.rank = 4;
  s.shape[0] = 1, s.shape[1] = n, s.shape[2] = t.shape[1], s.shape[3] = t.shape[2];
  s.stride[0] = n * t.stride[0], s.stride[1] = t.stride[0], s.stride[2] = t.stride[1], s.stride[3] = t.stride[2];
  return s;
}

/// Varlen: columns [q0, q0 + n) of a (Hq, total_q) LSE as a (1, Hq, n) view.
TensorView lse_cols(const TensorView& t, std::int64_t q0, std::int64_t n) {
  TensorView s = t;
  s.data = static_cast<char*>(t.data) + q0 * t.stride[1] * static_cast<std::int64_t>(element_size(t.dtype));
  s.rank = 3;
  s.shape[0] = 1, s.shape[1] = t.shape[0], s.shape[2] = n;
  s.stride[0] = t.shape[0] * t.stride[0], s.stride[1] = t.stride[0], s.stride[2] = t.stride[1];
  return s;
}

}  // namespace

void forward_kvcache(const KvCacheArgs& a, const Options& o, Precision precision) {
  for (const TensorView* t : {&a.q, &a.cache.k_cache})
    require(t->device.kind == DeviceKind::cpu, "q", "device cuda", "the reference runs on CPU tensors",
            "copy the tensors to the host first");
  // Validated as a kernel call with q standing in for out (and an f32 lse view of the same shape): the
  // oracle may write f64 outputs, whose shapes are checked below.
  KvCacheArgs va = a;
  va.out = a.q;
  std::vector<float> lse_stub;
  const bool vl = a.cu_seqlens_q.present();
  if (o.return_lse) {
    require(a.lse.rank == (vl ? 2 : 3), "lse", "rank " + std::to_string(a.lse.rank),
            vl ? "must be (Hq, total_q)" : "must be (B, Hq, Nq)", vl ? "pass a 2-D view" : "pass a 3-D view");
    lse_stub.resize(static_cast<std::size_t>(a.lse.numel()) + 1);
    va.lse = vl ? TensorView::contiguous(lse_stub.data(), DType::f32, {a.lse.shape[0], a.lse.shape[1]})
                : TensorView::contiguous(lse_stub.data(), DType::f32, {a.lse.shape[0], a.lse.shape[1], a.lse.shape[2]});
  }
  const ValidatedKvCache v = validate_kvcache(va, o);
  const KvProblem& p = v.problem;
  const KvTensors& t = v.tensors;
  for (int i = 0; i < a.q.rank; ++i)
    require(a.out.rank == a.q.rank && a.out.shape[i] == a.q.shape[i], "out", "shape", "must equal q's shape",
            "allocate out like q");

  // 1. The append: new key t of sequence b, rotated at position cache_seqlens[b] + t in fp64, stored once
  //    in the cache dtype.
  const DType dt = p.dtype;
  auto table = [&](const void* tab, std::int64_t pos, std::int64_t c) {
    return load_double(tab, dt, pos * t.rotary_stride + c);
  };
  std::vector<double> row(static_cast<std::size_t>(p.d));
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t cached = p.cache_seqlens[b];
    for (std::int64_t j = 0; j < p.nnew; ++j)
      for (std::int64_t h = 0; h < p.hkv; ++h) {
        const std::int64_t pos = rotary_key_position(cached, j);
        for (std::int64_t e = 0; e < p.d; ++e)
          row[e] = load_double(t.k_new, dt, b * t.sk_new.b + j * t.sk_new.n + h * t.sk_new.h + e);
        if (p.rotary_dim > 0)
          for (std::int64_t c = 0; c < p.rotary_dim / 2; ++c) {
            const RotaryPair pr = rotary_pair(c, p.rotary_dim, p.rotary_interleaved);
            const Rotated<double> r = rotate_pair(row[pr.a], row[pr.b], table(t.rotary_cos, pos, c), table(t.rotary_sin, pos, c));
            row[pr.a] = r.a, row[pr.b] = r.b;
          }
        const std::int64_t ko = cache_offset(p, t.skc, b, pos, h), vo = cache_offset(p, t.svc, b, pos, h);
        for (std::int64_t e = 0; e < p.d; ++e) {
          store_double(t.k_cache, dt, ko + e, row[e]);
          store_double(t.v_cache, dt, vo + e,
                       load_double(t.v_new, dt, b * t.sv_new.b + j * t.sv_new.n + h * t.sv_new.h + e));
        }
      }
  }

  // 2. Attention per sequence: gather keys [leftpad, cached + Nnew) and the rotated queries (sequences in
  //    parallel: each fills its own buffers), then the oracle on every sequence's (b, h) at once.
  const bool per_query = p.mask.masked();
  struct Sequence {
    Buffer k, v, q;
    ForwardArgs fa;
  };
  std::vector<std::unique_ptr<Sequence>> seqs(static_cast<std::size_t>(p.batch));
  parallel_tasks(p.batch, [&](std::int64_t b) {
    const std::int64_t nqb = p.nq_of(b), q0 = p.q_start(b);  // varlen: rows [q0, q0 + nqb) of q and out
    if (nqb == 0) return;
    const std::int64_t cached = p.cache_seqlens[b], lp = p.cache_leftpad ? p.cache_leftpad[b] : 0;
    const std::int64_t nk = cached + p.nnew - lp;
    const DType qdt = precision == Precision::f64 ? DType::f64 : dt;
    auto& s = seqs[static_cast<std::size_t>(b)];
    s.reset(new Sequence{Buffer(dt, 1, nk, p.hkv, p.d), Buffer(dt, 1, nk, p.hkv, p.d), Buffer(qdt, 1, nqb, p.hq, p.d), {}});
    Buffer &k = s->k, &vv = s->v, &q = s->q;
    for (std::int64_t j = 0; j < nk; ++j)
      for (std::int64_t h = 0; h < p.hkv; ++h) {
        const std::int64_t ko = cache_offset(p, t.skc, b, lp + j, h), vo = cache_offset(p, t.svc, b, lp + j, h);
        for (std::int64_t e = 0; e < p.d; ++e) {
          store_double(k.view.data, dt, (j * p.hkv + h) * p.d + e, load_double(t.k_cache, dt, ko + e));
          store_double(vv.view.data, dt, (j * p.hkv + h) * p.d + e, load_double(t.v_cache, dt, vo + e));
        }
      }
    std::vector<double> qrow(static_cast<std::size_t>(p.d));
    for (std::int64_t i = 0; i < nqb; ++i)
      for (std::int64_t h = 0; h < p.hq; ++h) {
        for (std::int64_t e = 0; e < p.d; ++e)
          qrow[e] = load_double(t.q, dt, b * t.sq.b + (q0 + i) * t.sq.n + h * t.sq.h + e);
        if (p.rotary_dim > 0) {
          const std::int64_t pos = rotary_query_position(cached, i, per_query);
          for (std::int64_t c = 0; c < p.rotary_dim / 2; ++c) {
            const RotaryPair pr = rotary_pair(c, p.rotary_dim, p.rotary_interleaved);
            const Rotated<double> r = rotate_pair(qrow[pr.a], qrow[pr.b], table(t.rotary_cos, pos, c), table(t.rotary_sin, pos, c));
            // The rotated query is stored in q's dtype before the product (FlashAttention-2 rotates q into a
            // tensor of q's dtype; the CUDA kernels and the CPU engine do likewise).
            qrow[pr.a] = round_to(dt, r.a), qrow[pr.b] = round_to(dt, r.b);
          }
        }
        for (std::int64_t e = 0; e < p.d; ++e) store_double(q.view.data, qdt, (i * p.hq + h) * p.d + e, qrow[e]);
      }
    ForwardArgs& fa = s->fa;
    fa.q = q.view;
    fa.k = k.view;
    fa.v = vv.view;
    fa.out = vl ? rows4(a.out, q0, nqb) : slice0(a.out, b);
    if (o.return_lse) fa.lse = vl ? lse_cols(a.lse, q0, nqb) : slice0(a.lse, b);
    if (a.alibi_slopes.present()) {
      fa.alibi_slopes = a.alibi_slopes;
      if (a.alibi_slopes.rank == 2) {  // row b as (Hq)
        fa.alibi_slopes = slice0(a.alibi_slopes, b);
        fa.alibi_slopes.rank = 1;
        fa.alibi_slopes.shape[0] = a.alibi_slopes.shape[1];
        fa.alibi_slopes.stride[0] = a.alibi_slopes.stride[1];
      }
    }
    fa.sinks = a.sinks;
  });
  std::vector<ForwardArgs> calls;
  for (const auto& s : seqs)
    if (s) calls.push_back(s->fa);
  forward_each(calls, o, precision);
}

}  // namespace flatattn::ref
