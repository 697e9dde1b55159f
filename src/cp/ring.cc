// ring_forward / ring_backward (include/flatattn/context_parallel.h): the ring's schedule over a RingTransport,
// the per-hop Blocks of ring_plan.h through flatattn::forward/backward with LSE, and the fp32 accumulators of
// ring_ops.h. The same steps as python/flatattn/distributed/ring.py (_forward, _backward).
#include <limits>
#include <string>
#include <utility>

#include "flatattn/context_parallel.h"
#include "src/core/philox.h"
#include "src/cp/ring_check.h"
#include "src/cp/ring_ops.h"
#include "src/cp/ring_plan.h"

namespace flatattn {

namespace {

using cp::Block;
using cp::Buffer;
using cp::RingShape;

// Rows [r0, r1) of dim `dim` of a view.
TensorView slice(TensorView t, int dim, std::int64_t r0, std::int64_t r1) {
  t.data = static_cast<unsigned char*>(t.data) + r0 * t.stride[dim] * static_cast<std::int64_t>(element_size(t.dtype));
  t.shape[dim] = r1 - r0;
  return t;
}

// A contiguous view over `data`.
TensorView view(void* data, DType dtype, Device device, std::int64_t a, std::int64_t b, std::int64_t c,
                std::int64_t d = -1) {
  return d < 0 ? TensorView::contiguous(data, dtype, {a, b, c}, device)
               : TensorView::contiguous(data, dtype, {a, b, c, d}, device);
}

// A dropout block call's first key must sit at a multiple of kDropoutColAlign columns of its sequence
// (src/core/philox.h: the stream's Philox calls serve 64-key groups; Options::dropout_col0's rule in
// src/core/validate.cc).

// The dropout position of a block call: (row0, col0) in the stream and the stream's sequence. Without documents
// the whole sequence's (global row and key of its first element); under a document mask the document's, as
// single-device varlen numbers it: sequence = the document's index, rows and keys counted from its start.
struct DropoutPos {
  std::int64_t row0 = 0, col0 = 0, batch0 = 0;
};
DropoutPos dropout_pos(const Block& blk, const std::vector<std::int64_t>& cu_seqlens) {
  if (cu_seqlens.size() < 2) return {blk.row0, blk.col0, 0};
  const std::int64_t start = cu_seqlens[static_cast<std::size_t>(blk.doc)];
  return {blk.row0 - start, blk.col0 - start, blk.doc};
}

// The options of one block's call: the user's scale, softcap, dataflow, threads; the block's mask, top-left.
Options block_options(const Options& o, const Block& blk, bool lse, const std::vector<std::int64_t>& cu_seqlens) {
  Options b = o;
  b.causal = blk.causal;
  b.causal_align = CausalAlign::top_left;
  b.window = Window{blk.window_left, blk.window_right};
  b.return_lse = lse;
  if (o.dropout_p > 0.f) {  // the whole sequence's (the document's) mask there
    const DropoutPos p = dropout_pos(blk, cu_seqlens);
    b.dropout_row0 = p.row0, b.dropout_col0 = p.col0, b.dropout_batch0 = p.batch0;
  }
  return b;
}

// Dropout: every block call's first key must sit on the stream's kDropoutColAlign-key grid (src/core/philox.h) of its sequence
// (under documents: of its document), so that its mask is the single-device one (Options::dropout_col0). The plan
// is every rank's, so every rank throws alike.
void check_dropout_plan(const cp::RingPlan& plan, SeqLayout layout, std::int64_t n, const Options& o,
                        const std::vector<std::int64_t>& cu_seqlens) {
  if (o.dropout_p <= 0.f) return;
  const std::int64_t chunk = layout == SeqLayout::zigzag ? n / 2 : n;
  const bool docs = cu_seqlens.size() >= 2;
  for (const auto& row : plan)
    for (const auto& hop : row)
      for (const Block& b : hop) {
        const DropoutPos p = dropout_pos(b, cu_seqlens);
        if (!docs || p.col0 % kDropoutColAlign == 0 || b.col0 % chunk) continue;
        const auto d = static_cast<std::size_t>(b.doc);
        throw Error(Error::Kind::invalid_argument, "cu_seqlens",
                    "document " + std::to_string(b.doc) + " = [" + std::to_string(cu_seqlens[d]) + ", " +
                        std::to_string(cu_seqlens[d + 1]) + ")",
                    "with dropout_p > 0 a document that spans shards must meet each shard boundary inside it at a "
                    "multiple of " + std::to_string(kDropoutColAlign) + " of the document (varlen numbers the dropout "
                    "stream per document, and its Philox calls serve 64-key groups): the boundary at global position " +
                        std::to_string(b.col0) + " is its column " + std::to_string(p.col0) + " (shard chunks of " +
                        std::to_string(chunk) + " tokens)",
                    "start documents that cross shards at multiples of " + std::to_string(kDropoutColAlign) +
                        " (pad documents to multiples of " + std::to_string(kDropoutColAlign) +
                        " tokens, chunks a multiple of it), or train without dropout here");
      }
  if (chunk % kDropoutColAlign && !docs)
    throw Error(Error::Kind::invalid_argument, "q", "n_local = " + std::to_string(n),
                std::string("with dropout_p > 0 every ") + (layout == SeqLayout::zigzag ? "zigzag chunk (n_local / 2)" :
                "shard") + " must start at a multiple of " + std::to_string(kDropoutColAlign) + " of the whole sequence (the "
                "dropout stream's Philox calls serve 64-key groups): n_local a multiple of " +
                std::to_string(layout == SeqLayout::zigzag ? 2 * kDropoutColAlign : kDropoutColAlign),
                "pad the sequence to that multiple of world tokens, or train without dropout here");
  for (const auto& row : plan)
    for (const auto& hop : row)
      for (const Block& b : hop)
        if (const DropoutPos p = dropout_pos(b, cu_seqlens); p.col0 < 0 || p.col0 % kDropoutColAlign)
          throw Error(Error::Kind::invalid_argument, "window.left", std::to_string(o.window.left),
                      "with dropout_p > 0 the window cuts a key block at column " + std::to_string(p.col0) + " of its " +
                          (docs ? "document" : "sequence") + ", not a multiple of " +
                          std::to_string(kDropoutColAlign) + " (the dropout stream's Philox calls serve 64-key groups)",
                      "use a left window side that is a multiple of " + std::to_string(kDropoutColAlign) + ", or train without dropout here");
}

// Validates, agrees across ranks, and returns this rank's plan.
std::vector<std::vector<Block>> prepare(const RingBackwardArgs& a, bool backward, RingTransport& tr, SeqLayout layout,
                                        const Options& o, Stream stream, RingShape& s) {
  std::optional<Error> local = cp::check_local(a, backward, tr, layout, o, s);
  const int w = tr.world(), r = tr.rank();
  if (local && (w < 1 || r < 0 || r >= w)) throw *local;  // no ring to agree on
  cp::agree(tr, layout, o, s, backward, local, stream);
  const bool fuse = o.dropout_p <= 0.f;  // dropout: one call per pair of runs, each at its global position
  const cp::RingPlan plan = cp::plan_ring(layout, w, s.n, o.causal, o.window.left, o.window.right, s.cu_seqlens, fuse);
  check_dropout_plan(plan, layout, s.n, o, s.cu_seqlens);
  return plan[r];
}

// The K/V shard in flight: (2, B, n, Hkv, D) contiguous in the input dtype.
struct KvBuffer {
  Buffer buf;
  std::size_t bytes = 0;
  TensorView k, v;
  KvBuffer(const RingShape& s) {
    const std::int64_t half = s.batch * s.n * s.hkv * s.d;
    bytes = 2 * static_cast<std::size_t>(half) * element_size(s.dtype);
    buf = Buffer(s.device, bytes);
    k = view(buf.data(), s.dtype, s.device, s.batch, s.n, s.hkv, s.d);
    v = view(static_cast<unsigned char*>(buf.data()) + bytes / 2, s.dtype, s.device, s.batch, s.n, s.hkv, s.d);
  }
};

std::string kernel_name(SeqLayout layout, int world, std::size_t steps, const Report& inner) {
  return "ring_" + std::string(name(layout)) + "_w" + std::to_string(world) + "_steps" + std::to_string(steps) +
         (inner.kernel.empty() ? "" : " (" + inner.kernel + ")");
}

}  // namespace

Report ring_forward(const RingForwardArgs& args, RingTransport& tr, SeqLayout layout, const Options& o, Stream stream) {
  RingBackwardArgs a;
  a.q = args.q, a.k = args.k, a.v = args.v, a.out = args.out, a.lse = args.lse, a.cu_seqlens = args.cu_seqlens;
  RingShape s;
  const auto hops = prepare(a, false, tr, layout, o, stream, s);
  const Device dev = s.device;
  Buffer acc_out_buf(dev, s.batch * s.n * s.hq * s.d * 4), acc_lse_buf(dev, s.batch * s.hq * s.n * 4);
  Buffer part_buf(dev, s.batch * s.n * s.hq * s.d * element_size(s.dtype)), part_lse_buf(dev, s.batch * s.hq * s.n * 4);
  const TensorView acc_out = view(acc_out_buf.data(), DType::f32, dev, s.batch, s.n, s.hq, s.d);
  const TensorView acc_lse = view(acc_lse_buf.data(), DType::f32, dev, s.batch, s.hq, s.n);
  const TensorView part = view(part_buf.data(), s.dtype, dev, s.batch, s.n, s.hq, s.d);
  const TensorView part_lse = view(part_lse_buf.data(), DType::f32, dev, s.batch, s.hq, s.n);
  cp::fill(acc_out, 0.0f, stream);
  cp::fill(acc_lse, -std::numeric_limits<float>::infinity(), stream);
  KvBuffer cur(s), next(s);
  cp::copy(cur.k, args.k, stream);
  cp::copy(cur.v, args.v, stream);
  Report inner;
  for (std::size_t t = 0; t < hops.size(); ++t) {
    int ticket = -1;
    if (t + 1 < hops.size())  // the next shard's transfer first: it overlaps this hop's compute
      ticket = tr.post(cur.buf.data(), next.buf.data(), cur.bytes, 1, -1, stream);
    for (const Block& blk : hops[t]) {
      ForwardArgs f;
      f.q = slice(args.q, 1, blk.q0, blk.q1);
      f.k = slice(cur.k, 1, blk.k0, blk.k1);
      f.v = slice(cur.v, 1, blk.k0, blk.k1);
      f.out = slice(part, 1, blk.q0, blk.q1);
      f.lse = slice(part_lse, 2, blk.q0, blk.q1);
      inner = forward(f, block_options(o, blk, true, s.cu_seqlens), stream);
      cp::merge(slice(acc_out, 1, blk.q0, blk.q1), slice(acc_lse, 2, blk.q0, blk.q1), f.out, f.lse, stream);
    }
    if (ticket >= 0) {
      tr.wait(ticket, stream);
      std::swap(cur, next);
    }
  }
  cp::copy(args.out, acc_out, stream);
  if (o.return_lse) cp::copy(args.lse, acc_lse, stream);
  Report rep = inner;
  rep.kernel = kernel_name(layout, tr.world(), hops.size(), inner);
  return rep;
}

Report ring_backward(const RingBackwardArgs& a, RingTransport& tr, SeqLayout layout, const Options& o, Stream stream) {
  RingShape s;
  const auto hops = prepare(a, true, tr, layout, o, stream, s);
  const Device dev = s.device;
  // Each block's gradients in fp32 (both engines write them for 16-bit inputs), so the hops' sum is rounded once at
  // the end. On CUDA only with D a multiple of 8 (fp32 gradients are never staged: src/cuda/check_args.cc); with
  // other D each hop's contribution there is rounded to the input dtype once (docs/context_parallel.md).
  const DType gdt = dev.kind == DeviceKind::cpu || s.d % 8 == 0 ? DType::f32 : s.dtype;
  const std::size_t esz = element_size(gdt);
  const std::int64_t nq = s.batch * s.n * s.hq * s.d, nk = s.batch * s.n * s.hkv * s.d;
  Buffer dq_buf(dev, nq * 4), gq_buf(dev, nq * esz), gkv_buf(dev, 2 * nk * esz);
  Buffer dkv_buf[2] = {Buffer(dev, 2 * nk * 4), Buffer(dev, 2 * nk * 4)}, incoming_buf(dev, 2 * nk * 4);
  const TensorView dq_acc = view(dq_buf.data(), DType::f32, dev, s.batch, s.n, s.hq, s.d);
  const TensorView gq = view(gq_buf.data(), gdt, dev, s.batch, s.n, s.hq, s.d);
  const TensorView gk = view(gkv_buf.data(), gdt, dev, s.batch, s.n, s.hkv, s.d);
  const TensorView gv = view(static_cast<unsigned char*>(gkv_buf.data()) + nk * esz, gdt, dev, s.batch, s.n,
                             s.hkv, s.d);
  // (2, B, n, Hkv, D) fp32 as a (2 B, n, Hkv, D) view; halves: dK, dV.
  auto kv32 = [&](void* p) { return view(p, DType::f32, dev, 2 * s.batch, s.n, s.hkv, s.d); };
  auto half = [&](const TensorView& t, int i) { return slice(t, 0, i * s.batch, (i + 1) * s.batch); };
  const TensorView incoming = kv32(incoming_buf.data());
  cp::fill(dq_acc, 0.0f, stream);
  KvBuffer cur(s), next(s);
  cp::copy(cur.k, a.k, stream);
  cp::copy(cur.v, a.v, stream);
  const std::size_t dkv_bytes = 2 * static_cast<std::size_t>(nk) * 4;
  int dkv_ticket = -1;
  const int steps = static_cast<int>(hops.size());
  TensorView dkv;
  Report inner;
  for (int t = 0; t < steps; ++t) {
    int ticket = -1;
    if (t + 1 < steps) ticket = tr.post(cur.buf.data(), next.buf.data(), cur.bytes, 1, -1, stream);
    dkv = kv32(dkv_buf[t % 2].data());  // the other one may still be in flight (waited below)
    cp::fill(dkv, 0.0f, stream);
    for (const Block& blk : hops[t]) {
      BackwardArgs b;
      b.dout = slice(a.dout, 1, blk.q0, blk.q1);
      b.q = slice(a.q, 1, blk.q0, blk.q1);
      b.k = slice(cur.k, 1, blk.k0, blk.k1);
      b.v = slice(cur.v, 1, blk.k0, blk.k1);
      b.out = slice(a.out, 1, blk.q0, blk.q1);
      b.lse = slice(a.lse, 2, blk.q0, blk.q1);
      b.dq = slice(gq, 1, blk.q0, blk.q1);
      b.dk = slice(gk, 1, blk.k0, blk.k1);
      b.dv = slice(gv, 1, blk.k0, blk.k1);
      inner = backward(b, block_options(o, blk, false, s.cu_seqlens), stream);
      cp::add(slice(dq_acc, 1, blk.q0, blk.q1), b.dq, stream);
      cp::add(slice(half(dkv, 0), 1, blk.k0, blk.k1), b.dk, stream);
      cp::add(slice(half(dkv, 1), 1, blk.k0, blk.k1), b.dv, stream);
    }
    if (dkv_ticket >= 0) tr.wait(dkv_ticket, stream);  // this shard's accumulator from rank - 1; our last send done
    dkv_ticket = -1;
    if (t > 0) cp::add(dkv, incoming, stream);
    if (t + 1 < steps) {
      dkv_ticket = tr.post(dkv.data, incoming.data, dkv_bytes, 1, -1, stream);
    } else if (t > 0) {  // the last step: the accumulator goes home to its owner (rank + 1 when every step ran)
      dkv_ticket = tr.post(dkv.data, incoming.data, dkv_bytes, -t, t, stream);
    }
    if (ticket >= 0) {
      tr.wait(ticket, stream);
      std::swap(cur, next);
    }
  }
  if (dkv_ticket >= 0) tr.wait(dkv_ticket, stream);
  const TensorView mine = steps > 1 ? incoming : dkv;  // our own shard's accumulator, complete
  cp::copy(a.dq, dq_acc, stream);
  cp::copy(a.dk, half(mine, 0), stream);
  cp::copy(a.dv, half(mine, 1), stream);
  Report rep = inner;
  rep.kernel = kernel_name(layout, tr.world(), hops.size(), inner);
  return rep;
}

}  // namespace flatattn
