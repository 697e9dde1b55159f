// Varlen metadata on the GPU is never trusted (issue 20, items 1-2): adversarial cu_seqlens / max_seqlen
// (non-monotone, negative, beyond the packed rows, a first offset other than 0, max_seqlen too small,
// empty batches) give a flatattn::Error naming the argument -- synchronously with
// FLATATTN_CHECK_METADATA=1, at the next call on the device otherwise -- and never touch memory outside
// the tensors: every tensor sits between guard regions of poison that must come back unchanged, and the
// rows of the offending sequences keep their poison. Run under compute-sanitizer memcheck too
// (--gtest_filter='Metadata*'): its out-of-bounds reads are caught there.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "flatattn/attention.h"
#include "src/core/half.h"
#include "tests/cuda/device_case.h"

using namespace flatattn;
using namespace flatattn::testing;

namespace {

constexpr std::uint16_t kPoison = 0x7e55;  // an f16 NaN payload no kernel writes
constexpr std::int64_t kGuard = 4096;      // elements of poison on each side of every tensor

/// A device tensor of `n` 16-bit (or 32-bit) elements between two guard regions of poison.
struct Guarded {
  std::int64_t n = 0, elem = 2;
  void* base = nullptr;
  Guarded(std::int64_t n_, std::int64_t elem_) : n(n_), elem(elem_) {
    const std::int64_t bytes = (n + 2 * kGuard) * elem;
    EXPECT_EQ(cudaMalloc(&base, static_cast<std::size_t>(bytes)), cudaSuccess);
    std::vector<std::uint16_t> poison(static_cast<std::size_t>(bytes / 2), kPoison);
    EXPECT_EQ(cudaMemcpy(base, poison.data(), static_cast<std::size_t>(bytes), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~Guarded() { cudaFree(base); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  [[nodiscard]] void* data() const { return static_cast<char*>(base) + kGuard * elem; }
  /// The whole allocation, guards included, as 16-bit words.
  [[nodiscard]] std::vector<std::uint16_t> read() const {
    std::vector<std::uint16_t> h(static_cast<std::size_t>((n + 2 * kGuard) * elem / 2));
    EXPECT_EQ(cudaMemcpy(h.data(), base, h.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  /// Fills the tensor itself (not the guards) with random values in [-1, 1) (f16; f32 for elem 4).
  void fill(std::mt19937_64& rng) {
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<std::uint16_t> h(static_cast<std::size_t>(n * elem / 2));
    if (elem == 2) {
      for (auto& x : h) x = float_to_f16(u(rng));
    } else {
      for (std::size_t i = 0; i < h.size(); i += 2) {
        const float f = u(rng);
        std::memcpy(&h[i], &f, 4);
      }
    }
    EXPECT_EQ(cudaMemcpy(data(), h.data(), h.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  }
  /// Counts guard words that lost their poison.
  [[nodiscard]] std::int64_t guard_damage() const {
    const std::vector<std::uint16_t> h = read();
    const std::int64_t g = kGuard * elem / 2, body = n * elem / 2;
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < g; ++i) bad += h[static_cast<std::size_t>(i)] != kPoison;
    for (std::int64_t i = g + body; i < 2 * g + body; ++i) bad += h[static_cast<std::size_t>(i)] != kPoison;
    return bad;
  }
};

/// Sets FLATATTN_CHECK_METADATA for one scope (nullptr unsets it).
class ScopedCheck {
 public:
  explicit ScopedCheck(const char* v) {
    if (const char* old = std::getenv("FLATATTN_CHECK_METADATA")) old_ = old, had_ = true;
    v ? setenv("FLATATTN_CHECK_METADATA", v, 1) : unsetenv("FLATATTN_CHECK_METADATA");
  }
  ~ScopedCheck() { had_ ? setenv("FLATATTN_CHECK_METADATA", old_.c_str(), 1) : unsetenv("FLATATTN_CHECK_METADATA"); }
  ScopedCheck(const ScopedCheck&) = delete;
  ScopedCheck& operator=(const ScopedCheck&) = delete;

 private:
  std::string old_;
  bool had_ = false;
};

constexpr std::int64_t kTotalQ = 64, kTotalK = 80, kHq = 2, kHkv = 1;

/// One varlen problem's device tensors, each guarded: q, k, v, out, lse, dout, dq, dk, dv and the offsets.
struct VarlenSet {
  std::int64_t d;
  DType dt = DType::f16;
  Guarded q, k, v, out, lse, dout, dq, dk, dv, cuq, cuk;
  VarlenSet(std::int64_t d_, std::int64_t batch, std::mt19937_64& rng, DType dt_ = DType::f16)
      : d(d_), dt(dt_), q(kTotalQ * kHq * d, 2), k(kTotalK * kHkv * d, 2), v(kTotalK * kHkv * d, 2), out(kTotalQ * kHq * d, 2),
        lse(kHq * kTotalQ, 4), dout(kTotalQ * kHq * d, 2), dq(kTotalQ * kHq * d, 2), dk(kTotalK * kHkv * d, 2),
        dv(kTotalK * kHkv * d, 2), cuq(batch + 1, 4), cuk(batch + 1, 4) {
    q.fill(rng), k.fill(rng), v.fill(rng), dout.fill(rng), lse.fill(rng);
  }
  void set_cu(const std::vector<int>& cq, const std::vector<int>& ck) {
    ASSERT_EQ(cudaMemcpy(cuq.data(), cq.data(), cq.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(cuk.data(), ck.data(), ck.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  }
  [[nodiscard]] Varlen varlen(std::int64_t batch, std::int64_t max_q, std::int64_t max_k) const {
    Varlen w;
    w.cu_seqlens_q = TensorView::contiguous(cuq.data(), DType::i32, {batch + 1}, Device::cuda(0));
    w.cu_seqlens_k = TensorView::contiguous(cuk.data(), DType::i32, {batch + 1}, Device::cuda(0));
    w.max_seqlen_q = max_q;
    w.max_seqlen_k = max_k;
    return w;
  }
  [[nodiscard]] ForwardArgs fwd(const Varlen& w) const {
    ForwardArgs a;
    a.q = TensorView::contiguous(q.data(), dt, {kTotalQ, kHq, d}, Device::cuda(0));
    a.k = TensorView::contiguous(k.data(), dt, {kTotalK, kHkv, d}, Device::cuda(0));
    a.v = TensorView::contiguous(v.data(), dt, {kTotalK, kHkv, d}, Device::cuda(0));
    a.out = TensorView::contiguous(out.data(), dt, {kTotalQ, kHq, d}, Device::cuda(0));
    a.lse = TensorView::contiguous(lse.data(), DType::f32, {kHq, kTotalQ}, Device::cuda(0));
    a.varlen = w;
    return a;
  }
  [[nodiscard]] BackwardArgs bwd(const Varlen& w) const {
    BackwardArgs a;
    a.dout = TensorView::contiguous(dout.data(), dt, {kTotalQ, kHq, d}, Device::cuda(0));
    a.q = TensorView::contiguous(q.data(), dt, {kTotalQ, kHq, d}, Device::cuda(0));
    a.k = TensorView::contiguous(k.data(), dt, {kTotalK, kHkv, d}, Device::cuda(0));
    a.v = TensorView::contiguous(v.data(), dt, {kTotalK, kHkv, d}, Device::cuda(0));
    a.out = TensorView::contiguous(out.data(), dt, {kTotalQ, kHq, d}, Device::cuda(0));
    a.lse = TensorView::contiguous(lse.data(), DType::f32, {kHq, kTotalQ}, Device::cuda(0));
    a.dq = TensorView::contiguous(dq.data(), dt, {kTotalQ, kHq, d}, Device::cuda(0));
    a.dk = TensorView::contiguous(dk.data(), dt, {kTotalK, kHkv, d}, Device::cuda(0));
    a.dv = TensorView::contiguous(dv.data(), dt, {kTotalK, kHkv, d}, Device::cuda(0));
    a.varlen = w;
    return a;
  }
  /// Guard words damaged over every tensor (the inputs' guards included: a read-only tensor is never written).
  [[nodiscard]] std::int64_t damage() const {
    std::int64_t n = 0;
    for (const Guarded* g : {&q, &k, &v, &out, &lse, &dout, &dq, &dk, &dv, &cuq, &cuk}) n += g->guard_damage();
    return n;
  }
};

/// One adversarial metadata set: the offsets, the max lengths and the argument the Error must name.
struct BadMeta {
  const char* what;
  std::vector<int> cq, ck;
  std::int64_t max_q, max_k;
  const char* argument;
};

std::vector<BadMeta> bad_sets() {
  return {
      {"non-monotone q", {0, 40, 20, 64}, {0, 30, 60, 80}, 64, 80, "cu_seqlens_q"},
      {"non-monotone k", {0, 20, 40, 64}, {0, 60, 30, 80}, 64, 80, "cu_seqlens_k"},
      {"negative q", {0, -7, 30, 64}, {0, 30, 60, 80}, 64, 80, "cu_seqlens_q"},
      {"negative k", {0, 20, 40, 64}, {0, -100000, 60, 80}, 64, 80, "cu_seqlens_k"},
      {"q beyond total", {0, 20, 40, 5000}, {0, 30, 60, 80}, 5000, 80, "cu_seqlens_q"},
      {"k beyond total", {0, 20, 40, 64}, {0, 30, 60, 1 << 30}, 64, 80, "cu_seqlens_k"},
      {"int extremes", {0, INT_MAX, INT_MIN, 64}, {0, INT_MIN, INT_MAX, 80}, 64, 80, "cu_seqlens_q"},
      {"first offset not 0", {5, 20, 40, 64}, {0, 30, 60, 80}, 64, 80, "cu_seqlens_q"},
      {"max_seqlen_q too small", {0, 10, 40, 64}, {0, 30, 60, 80}, 24, 80, "max_seqlen_q"},
      {"max_seqlen_k too small", {0, 10, 40, 64}, {0, 30, 60, 80}, 30, 8, "max_seqlen_k"},
      {"empty batches then beyond", {0, 0, 0, 1000}, {0, 0, 0, 80}, 1000, 80, "cu_seqlens_q"},
      {"max_seqlen_k = 0, keys present", {0, 20, 40, 64}, {0, 30, 60, 80}, 64, 0, "max_seqlen_k"},
  };
}

/// Runs f, expecting an Error naming `argument`.
template <class F>
void expect_meta_error(F&& f, const std::string& argument, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << what << ": no Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::invalid_argument) << what << ": " << e.what();
    EXPECT_EQ(e.argument(), argument) << what << ": " << e.what();
    EXPECT_FALSE(e.limit().empty());
    EXPECT_FALSE(e.fix().empty());
  }
}

/// True when the build serves f16 varlen at head dim d with `opt` (else the test skips that case).
bool served(VarlenSet& s, const Options& opt) {
  s.set_cu({0, 20, 40, 64}, {0, 30, 60, 80});
  try {
    forward(s.fwd(s.varlen(3, 24, 30)), opt);
    backward(s.bwd(s.varlen(3, 24, 30)), opt);
  } catch (const Error& e) {
    if (e.kind() == Error::Kind::unsupported) return false;
    throw;
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return true;
}

std::vector<Options> option_sets() {
  std::vector<Options> v;
  for (Dataflow df : {Dataflow::flash, Dataflow::flat}) {
    Options o;
    o.return_lse = true;
    o.dataflow = df;
    v.push_back(o);
    o.causal = true;
    o.deterministic = true;  // the backward's bound kernel too
    v.push_back(o);
  }
  return v;
}

/// Every bad set on forward and backward in checking mode, f16 and bf16, with head dim d (a multiple of
/// 8: direct; else staged), for each option set the build serves.
void run_checking(std::int64_t d) {
  ScopedCheck on("1");
  std::mt19937_64 rng(seed_for("Metadata"));
  int ran = 0;
  for (DType dt : {DType::f16, DType::bf16})
  for (const Options& opt : option_sets()) {
    if (!dtype_runs(dt)) continue;
    VarlenSet s(d, 3, rng, dt);
    if (!served(s, opt)) continue;
    ++ran;
    for (const BadMeta& m : bad_sets()) {
      const std::string what = std::string(m.what) + " (" + std::string(name(dt)) + ", " + std::string(name(opt.dataflow)) +
                               (opt.causal ? ", causal, deterministic" : "") + ", D = " + std::to_string(d) + ")";
      s.set_cu(m.cq, m.ck);
      const Varlen w = s.varlen(3, m.max_q, m.max_k);
      expect_meta_error([&] { forward(s.fwd(w), opt); }, m.argument, "forward " + what);
      expect_meta_error([&] { backward(s.bwd(w), opt); }, m.argument, "backward " + what);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
      EXPECT_EQ(s.damage(), 0) << what << ": a guard region was written";
    }
  }
  if (ran == 0) GTEST_SKIP() << "no varlen instance at D = " << d << " in this build";
}

}  // namespace

TEST(Metadata, CheckingModeDirect) {
  REQUIRE_GPU();
  run_checking(64);
}

TEST(Metadata, CheckingModeDirectD128) {
  REQUIRE_GPU();
  run_checking(128);
}

TEST(Metadata, CheckingModeStaged) {  // D = 59: the views are staged (padded copies), cu_seqlens bound the copy-back
  REQUIRE_GPU();
  run_checking(59);
}

// The defined outputs: the offending sequence's rows of out, lse, dq (and its keys' dk, dv) are not
// written; the valid sequences' rows are.
TEST(Metadata, OffendingSequenceSkipped) {
  REQUIRE_GPU();
  ScopedCheck on("1");
  std::mt19937_64 rng(seed_for("Metadata.OffendingSequenceSkipped"));
  VarlenSet s(64, 3, rng);
  Options opt;
  opt.return_lse = true;
  opt.dataflow = Dataflow::flash;
  if (!served(s, opt)) GTEST_SKIP() << "no f16 varlen D = 64 instance";
  // Fresh poison in the outputs, then sequence 1 (30 query rows, 30 keys) exceeds max_seqlen_q = 24.
  VarlenSet t(64, 3, rng);
  t.set_cu({0, 10, 40, 64}, {0, 30, 60, 80});
  const Varlen w = t.varlen(3, 24, 30);
  expect_meta_error([&] { forward(t.fwd(w), opt); }, "max_seqlen_q", "forward");
  expect_meta_error([&] { backward(t.bwd(w), opt); }, "max_seqlen_q", "backward");
  const std::vector<std::uint16_t> out = t.out.read(), dq = t.dq.read(), dk = t.dk.read();
  const std::int64_t row_q = kHq * 64, row_k = kHkv * 64;
  auto poisoned_rows = [](const std::vector<std::uint16_t>& h, std::int64_t row, std::int64_t r0, std::int64_t r1) {
    std::int64_t n = 0;
    for (std::int64_t i = kGuard + r0 * row; i < kGuard + r1 * row; ++i) n += h[static_cast<std::size_t>(i)] == kPoison;
    return n;
  };
  EXPECT_EQ(poisoned_rows(out, row_q, 10, 40), 30 * row_q) << "out rows of the skipped sequence were written";
  EXPECT_EQ(poisoned_rows(out, row_q, 0, 10), 0) << "out rows of sequence 0 not written";
  EXPECT_EQ(poisoned_rows(out, row_q, 40, 64), 0) << "out rows of sequence 2 not written";
  EXPECT_EQ(poisoned_rows(dq, row_q, 10, 40), 30 * row_q) << "dq rows of the skipped sequence were written";
  EXPECT_EQ(poisoned_rows(dq, row_q, 0, 10), 0);
  EXPECT_EQ(poisoned_rows(dk, row_k, 30, 60), 30 * row_k) << "dk rows of the skipped sequence were written";
  EXPECT_EQ(poisoned_rows(dk, row_k, 0, 30), 0);
  EXPECT_EQ(t.damage(), 0);
}

// Without the checking mode the call returns and the next call on the device raises the violation
// (once: the word is cleared), doing nothing itself.
TEST(Metadata, AsynchronousReport) {
  REQUIRE_GPU();
  ScopedCheck off(nullptr);
  std::mt19937_64 rng(seed_for("Metadata.AsynchronousReport"));
  VarlenSet s(64, 3, rng);
  Options opt;
  opt.return_lse = true;
  if (!served(s, opt)) GTEST_SKIP() << "no f16 varlen D = 64 instance";
  s.set_cu({0, 40, 20, 64}, {0, 30, 60, 80});
  const Varlen bad = s.varlen(3, 64, 80);
  EXPECT_NO_THROW(forward(s.fwd(bad), opt));  // reported later
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  VarlenSet good(64, 3, rng);
  good.set_cu({0, 20, 40, 64}, {0, 30, 60, 80});
  const Varlen ok = good.varlen(3, 24, 30);
  expect_meta_error([&] { forward(good.fwd(ok), opt); }, "cu_seqlens_q", "the next call");
  const std::vector<std::uint16_t> untouched = good.out.read();
  std::int64_t written = 0;
  for (std::uint16_t x : untouched) written += x != kPoison;
  EXPECT_EQ(written, 0) << "the call that reported an earlier violation wrote its output";
  EXPECT_NO_THROW(forward(good.fwd(ok), opt));  // cleared
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_NO_THROW(backward(good.bwd(ok), opt));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(s.damage() + good.damage(), 0);
}

// check_errors raises the asynchronous violation at once, on the call's stream and device-wide, clears it,
// and returns quietly when nothing is pending (issue 20, item 5 of the follow-up: FA users' explicit check).
TEST(Metadata, CheckErrorsRaisesPending) {
  REQUIRE_GPU();
  ScopedCheck off(nullptr);
  std::mt19937_64 rng(seed_for("Metadata.CheckErrorsRaisesPending"));
  VarlenSet s(64, 3, rng);
  Options opt;
  opt.return_lse = true;
  if (!served(s, opt)) GTEST_SKIP() << "no f16 varlen D = 64 instance";
  EXPECT_NO_THROW(check_errors(Device::cuda(0)));  // nothing pending (an earlier test's report was consumed)
  cudaStream_t st = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), cudaSuccess);
  s.set_cu({0, 20, 40, 64}, {0, 30, 60, 80});
  EXPECT_NO_THROW(forward(s.fwd(s.varlen(3, 24, 10)), opt, Stream{st}));  // max_seqlen_k = 10 < 30
  expect_meta_error([&] { check_errors(Device::cuda(0), Stream{st}); }, "max_seqlen_k", "check_errors on the stream");
  EXPECT_NO_THROW(check_errors(Device::cuda(0), Stream{st}));  // cleared
  s.set_cu({0, 40, 20, 64}, {0, 30, 60, 80});
  EXPECT_NO_THROW(backward(s.bwd(s.varlen(3, 64, 80)), opt, Stream{st}));  // non-monotone cu_seqlens_q
  expect_meta_error([&] { check_errors(Device::cuda(0)); }, "cu_seqlens_q", "check_errors device-wide");
  EXPECT_NO_THROW(check_errors(Device::cuda(0)));
  s.set_cu({0, 20, 40, 64}, {0, 30, 60, 80});
  EXPECT_NO_THROW(forward(s.fwd(s.varlen(3, 24, 30)), opt, Stream{st}));  // valid: nothing to report
  EXPECT_NO_THROW(check_errors(Device::cuda(0), Stream{st}));
  EXPECT_EQ(cudaStreamDestroy(st), cudaSuccess);
  EXPECT_EQ(s.damage(), 0);
}

// Valid metadata with empty sequences and max_seqlen above the longest: no Error in checking mode.
TEST(Metadata, ValidEmptySequencesPass) {
  REQUIRE_GPU();
  ScopedCheck on("1");
  std::mt19937_64 rng(seed_for("Metadata.ValidEmptySequencesPass"));
  VarlenSet s(64, 4, rng);
  Options opt;
  opt.return_lse = true;
  s.set_cu({0, 0, 30, 30, 50}, {0, 10, 10, 80, 80});
  const Varlen w = s.varlen(4, 64, 80);
  try {
    forward(s.fwd(w), opt);
    backward(s.bwd(w), opt);
  } catch (const Error& e) {
    if (e.kind() == Error::Kind::unsupported) GTEST_SKIP() << e.what();
    ADD_FAILURE() << e.what();
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(s.damage(), 0);
}
