// The ring's input checks (ring_check.h).
#include "src/cp/ring_check.h"

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "src/cp/ring_ops.h"

namespace flatattn::cp {

namespace {

std::string shape_str(const TensorView& t) {
  std::string s = "shape (";
  for (int i = 0; i < t.rank; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + ")";
}

Error bad(const std::string& arg, const std::string& value, const std::string& limit, const std::string& fix) {
  return Error(Error::Kind::invalid_argument, arg, value, limit, fix);
}

// A view of `rank` dims with the given shape, dtype and device, last dim contiguous.
std::optional<Error> check_view(const char* name, const TensorView& t, std::array<std::int64_t, 4> shape, int rank,
                                const char* layout, DType dtype, Device device) {
  if (!t.present() || t.rank != rank)
    return bad(name, t.present() ? shape_str(t) : "absent", std::string("must be rank ") + std::to_string(rank) + " " +
               layout, std::string("pass this rank's ") + name + " as " + layout);
  for (int i = 0; i < rank; ++i)
    if (t.shape[i] != shape[i]) {
      std::string want = "(";
      for (int j = 0; j < rank; ++j) want += (j ? ", " : "") + std::to_string(shape[j]);
      return bad(name, shape_str(t), std::string("must be ") + layout + " = " + want + ")",
                 "shard q, k, v (and outputs) with the same layout: every shard holds the same n positions");
    }
  if (t.data == nullptr) return bad(name, "null data", "must point to the tensor", "pass an allocated tensor");
  if (t.dtype != dtype)
    return bad(std::string(name) + ".dtype", std::string(flatattn::name(t.dtype)),
               std::string("must be ") + std::string(flatattn::name(dtype)), "pass one dtype (f32 fp32 LSE)");
  if (!(t.device == device))
    return bad(std::string(name) + ".device", t.device.kind == DeviceKind::cuda ? "cuda:" + std::to_string(t.device.index)
               : "cpu", "must be q's device", "pass every tensor of a rank on one device");
  if (t.stride[rank - 1] != 1)
    return bad(std::string(name) + ".stride", "last stride " + std::to_string(t.stride[rank - 1]),
               "the last dim must be contiguous (stride 1)", "pass a contiguous view (.contiguous())");
  return std::nullopt;
}

constexpr const char* kFields[] = {"error flag",   "direction",  "q.shape[0] (B)",   "q.shape[1] (n_local)",
                                   "q.shape[2] (Hq)", "k.shape[2] (Hkv)", "q.shape[3] (D)", "q.dtype",
                                   "q.device",     "causal",     "window.left",      "window.right",
                                   "softcap",      "softmax_scale", "layout",        "return_lse",
                                   "deterministic", "world",     "cu_seqlens (documents)",
                                   "cu_seqlens (values)", "dropout_p", "dropout_seed", "dropout_offset"};
constexpr int kNumFields = sizeof(kFields) / sizeof(kFields[0]);

// FNV-1a of the document boundaries: ranks with different boundaries disagree on it.
std::int64_t digest(const std::vector<std::int64_t>& v) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::int64_t x : v) h = (h ^ static_cast<std::uint64_t>(x)) * 1099511628211ull;
  return static_cast<std::int64_t>(h >> 1);
}

std::int64_t bits(float f) {
  std::int32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

}  // namespace

std::optional<Error> check_local(const RingBackwardArgs& a, bool backward, const RingTransport& transport,
                                 SeqLayout layout, const Options& o, RingShape& s) {
  const int w = transport.world(), r = transport.rank();
  if (w < 1) return bad("transport.world", "world = " + std::to_string(w), "a ring has at least one rank",
                        "pass the transport of an initialized communicator");
  if (r < 0 || r >= w)
    return bad("transport.rank", "rank = " + std::to_string(r), "must be in [0, world) = [0, " + std::to_string(w) + ")",
               "pass this process's rank in the communicator");
  const TensorView& q = a.q;
  if (!q.present() || q.rank != 4)
    return bad("q", q.present() ? shape_str(q) : "absent", "must be rank 4 (B, n_local, Hq, D)",
               "pass this rank's query shard as (batch, tokens, heads, head dim)");
  if (q.dtype != DType::f32 && q.dtype != DType::f16 && q.dtype != DType::bf16)
    return bad("q.dtype", std::string(name(q.dtype)), "must be f32, f16 or bf16", "cast the input");
  s = RingShape{q.shape[0], q.shape[1], q.shape[2], a.k.present() && a.k.rank == 4 ? a.k.shape[2] : 0, q.shape[3],
                q.dtype, q.device, {}};
  const Device td = transport.device();
  if (!(q.device == td))
    return bad("q.device", q.device.kind == DeviceKind::cuda ? "cuda:" + std::to_string(q.device.index) : "cpu",
               "must be the transport's device (" +
                   (td.kind == DeviceKind::cuda ? "cuda:" + std::to_string(td.index) : std::string("cpu")) + ")",
               "pass this rank's tensors on the device its transport moves (LocalRing(world, device); NCCL: the "
               "communicator's GPU)");
  const char* qs = "(B, n_local, Hq, D)";
  const char* ks = "(B, n_local, Hkv, D)";
  if (auto e = check_view("q", q, {s.batch, s.n, s.hq, s.d}, 4, qs, s.dtype, s.device)) return e;
  if (!a.k.present() || a.k.rank != 4)
    return bad("k", a.k.present() ? shape_str(a.k) : "absent", "must be rank 4 (B, n_local, Hkv, D)",
               "pass this rank's key shard");
  if (auto e = check_view("k", a.k, {s.batch, s.n, s.hkv, s.d}, 4, ks, s.dtype, s.device)) return e;
  if (auto e = check_view("v", a.v, {s.batch, s.n, s.hkv, s.d}, 4, ks, s.dtype, s.device)) return e;
  if (s.hkv == 0 || s.hq % s.hkv)
    return bad("k", "Hkv = " + std::to_string(s.hkv) + " with Hq = " + std::to_string(s.hq),
               "Hq must be a multiple of Hkv (GQA/MQA)", "use Hkv dividing Hq, or repeat k/v heads");
  if (s.n == 0) return bad("q", "n_local = 0", "every rank needs at least one token", "use fewer ranks");
  if (layout == SeqLayout::zigzag && s.n % 2)
    return bad("q", "n_local = " + std::to_string(s.n), "a zigzag shard holds two equal chunks, so n_local must be even",
               "shard a sequence of a multiple of 2 x world tokens, or use SeqLayout::contiguous");
  if (!(o.dropout_p >= 0.0f && o.dropout_p < 1.0f))
    return bad("dropout_p", std::to_string(o.dropout_p), "must be in [0, 1) (0 disables dropout)",
               "pass a probability such as 0.1, or 0");
  if (o.dropout_row0 != 0 || o.dropout_col0 != 0)
    return bad(o.dropout_row0 != 0 ? "dropout_row0" : "dropout_col0",
               std::to_string(o.dropout_row0 != 0 ? o.dropout_row0 : o.dropout_col0),
               "must be 0: the ring places each block call itself", "leave dropout_row0/col0 at 0");
  if (o.dropout_batch0 != 0 || o.dropout_head0 != 0 || o.dropout_heads != 0)
    return bad(o.dropout_batch0 != 0 ? "dropout_batch0" : o.dropout_head0 != 0 ? "dropout_head0" : "dropout_heads",
               std::to_string(o.dropout_batch0 != 0 ? o.dropout_batch0
                              : o.dropout_head0 != 0 ? o.dropout_head0 : o.dropout_heads),
               "must be 0: the ring numbers each block call's documents itself",
               "leave dropout_batch0/head0/heads at 0");
  if (o.softcap < 0 || !(o.softcap == o.softcap))
    return bad("softcap", std::to_string(o.softcap), "must be >= 0 (0: off)", "pass a positive cap or 0");
  if (o.window.left < -1 || o.window.right < -1)
    return bad("window", "(" + std::to_string(o.window.left) + ", " + std::to_string(o.window.right) + ")",
               "each side must be >= -1 (-1: unbounded)", "pass (-1, -1) for no window");
  if (o.causal && o.window.right > 0)
    return bad("window.right", std::to_string(o.window.right), "causal forces window right = 0",
               "drop causal, or set the right side to -1 or 0");
  const std::array<std::int64_t, 4> qshape{s.batch, s.n, s.hq, s.d};
  const std::array<std::int64_t, 4> lshape{s.batch, s.hq, s.n, 0};
  if (a.cu_seqlens.present()) {
    const TensorView& cu = a.cu_seqlens;
    if (cu.rank != 1 || cu.dtype != DType::i32 || cu.device.kind != DeviceKind::cpu || cu.data == nullptr ||
        cu.shape[0] < 2)
      return bad("cu_seqlens", shape_str(cu) + " " + std::string(name(cu.dtype)),
                 "must be int32 (S + 1), S >= 1, in host memory (the ring plans its hops on the host)",
                 "pass the document boundaries of the whole sequence as a host int32 vector");
    const auto* p = static_cast<const std::int32_t*>(cu.data);
    const std::int64_t total = s.n * w;
    for (std::int64_t i = 0; i < cu.shape[0]; ++i) {
      const std::int64_t x = p[i * cu.stride[0]];
      const std::int64_t prev = i ? s.cu_seqlens.back() : 0;
      if ((i == 0 && x != 0) || x < prev || x > total || (i + 1 == cu.shape[0] && x != total)) {
        s.cu_seqlens.clear();
        return bad("cu_seqlens", "cu_seqlens[" + std::to_string(i) + "] = " + std::to_string(x),
                   "must rise from 0 to N = world x n_local = " + std::to_string(total) + " (non-decreasing)",
                   "pass the boundaries of the documents packed into the whole sequence, in global positions");
      }
      s.cu_seqlens.push_back(x);
    }
  }
  if (!backward) {
    if (auto e = check_view("out", a.out, qshape, 4, qs, s.dtype, s.device)) return e;
    if (o.return_lse) {
      if (auto e = check_view("lse", a.lse, lshape, 3, "(B, Hq, n_local)", DType::f32, s.device)) return e;
    } else if (a.lse.present()) {
      return bad("lse", "given", "return_lse is false, so lse would not be written",
                 "set Options::return_lse = true, or pass no lse view");
    }
    return std::nullopt;
  }
  if (auto e = check_view("dout", a.dout, qshape, 4, qs, s.dtype, s.device)) return e;
  if (auto e = check_view("out", a.out, qshape, 4, qs, s.dtype, s.device)) return e;
  if (auto e = check_view("lse", a.lse, lshape, 3, "(B, Hq, n_local)", DType::f32, s.device)) return e;
  if (auto e = check_view("dq", a.dq, qshape, 4, qs, s.dtype, s.device)) return e;
  if (auto e = check_view("dk", a.dk, {s.batch, s.n, s.hkv, s.d}, 4, ks, s.dtype, s.device)) return e;
  if (auto e = check_view("dv", a.dv, {s.batch, s.n, s.hkv, s.d}, 4, ks, s.dtype, s.device)) return e;
  return std::nullopt;
}

void agree(RingTransport& transport, SeqLayout layout, const Options& o, const RingShape& s, bool backward,
           const std::optional<Error>& local, Stream stream) {
  const int w = transport.world(), r = transport.rank();
  const std::array<std::int64_t, kNumFields> mine{
      local ? 1 : 0, backward, s.batch, s.n, s.hq, s.hkv, s.d, static_cast<std::int64_t>(s.dtype),
      static_cast<std::int64_t>(s.device.kind), o.causal, o.window.left, o.window.right, bits(o.softcap),
      o.softmax_scale ? bits(*o.softmax_scale) : -1, static_cast<std::int64_t>(layout), o.return_lse && !backward,
      o.deterministic, w, static_cast<std::int64_t>(s.cu_seqlens.size()), digest(s.cu_seqlens), bits(o.dropout_p),
      static_cast<std::int64_t>(o.dropout_seed), static_cast<std::int64_t>(o.dropout_offset)};
  constexpr std::size_t kBytes = sizeof(mine);
  std::vector<std::array<std::int64_t, kNumFields>> all(w);
  all[r] = mine;
  if (w > 1) {
    // Every rank forwards what it received last hop: after W - 1 hops each has seen every descriptor.
    const Device dev = transport.device();  // valid whatever this rank's tensors are
    Buffer send(dev, kBytes), recv(dev, kBytes);
    copy_bytes(send.data(), mine.data(), kBytes, dev, stream);
    for (int hop = 1; hop < w; ++hop) {
      const int ticket = transport.post(send.data(), recv.data(), kBytes, 1, -1, stream);
      transport.wait(ticket, stream);
      auto& got = all[((r - hop) % w + w) % w];
      copy_bytes(got.data(), recv.data(), kBytes, dev, stream);
      copy_bytes(send.data(), got.data(), kBytes, dev, stream);
    }
  }
  if (local) throw *local;
  for (int q = 0; q < w; ++q)
    if (all[q][0])
      throw Error(Error::Kind::invalid_argument, "rank " + std::to_string(q), "refused its input",
                  "every rank of the ring must pass valid shards (its own error names the argument)",
                  "fix the input of rank " + std::to_string(q));
  for (int f = 1; f < kNumFields; ++f)
    for (int q = 0; q < w; ++q)
      if (all[q][f] != all[0][f])
        throw Error(Error::Kind::invalid_argument, kFields[f],
                    std::to_string(all[0][f]) + " on rank 0, " + std::to_string(all[q][f]) + " on rank " +
                        std::to_string(q),
                    "every rank of the ring must pass the same shapes and options (one sequence split evenly)",
                    "shard the sequence evenly (N divisible by world, by 2 x world for zigzag) and pass the same "
                    "options on every rank");
}

}  // namespace flatattn::cp
