// 64-bit safety of the CPU engine (issue 20, item 7): views whose element offsets pass 2^31 give the same
// results, bit for bit, as the same problem in compact tensors. The second sequence of every tensor (q, k, v,
// out, lse, dout, dq, dk, dv) starts 2^31 + 4096 elements after the first, so every offset of its rows needs
// 64 bits, while the footprint stays small: the region is reserved with mmap(MAP_NORESERVE) and only the pages
// of the rows the call touches are ever backed (about a megabyte of 8 + 16 GiB of address space).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#include "src/core/half.h"
#include "tests/cpu/cpu_check.h"

using namespace flatattn;
using namespace flatattn::check;
using namespace flatattn::testing;

namespace {

constexpr std::int64_t kSlot = (std::int64_t{1} << 31) + 4096;  ///< batch stride in elements: past int32

/// An anonymous mapping of `bytes`, never backed where it is not written (MAP_NORESERVE).
struct Reserved {
  void* p = MAP_FAILED;
  std::size_t n = 0;
  explicit Reserved(std::size_t bytes) : n(bytes) {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }
  ~Reserved() {
    if (p != MAP_FAILED) munmap(p, n);
  }
  Reserved(const Reserved&) = delete;
  Reserved& operator=(const Reserved&) = delete;
  [[nodiscard]] char* at(std::int64_t byte) const { return static_cast<char*>(p) + byte; }
};

/// A (B = 2, N, H, D) view in slot layout: sequence b at element b * kSlot + base, rows (N, H, D) compact.
TensorView slot_view(const Reserved& r, DType dt, std::int64_t base, std::int64_t n, std::int64_t h, std::int64_t d) {
  return TensorView::strided(r.at(base * static_cast<std::int64_t>(element_size(dt))), dt, {2, n, h, d},
                             {kSlot, h * d, d, 1});
}

/// Copies the logical elements of x (B, N, H, D) into view v, or back (to_view = false).
void copy(HostTensor& x, const TensorView& v, bool to_view) {
  const std::int64_t n = x.shape[1], h = x.shape[2], d = x.shape[3];
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const std::int64_t b = i / (n * h * d), r = i % (n * h * d);
    const std::int64_t off = b * v.stride[0] + r;  // rows compact within a sequence
    if (to_view) {
      store_double(v.data, v.dtype, off, x.at(i));
    } else {
      x.set(i, load_double(v.data, v.dtype, off));
    }
  }
}

TEST(LargeOffsets, SequencesPast2To31ElementsMatchCompact) {
  for (DType dt : {DType::bf16, DType::f32}) {
    Seeded s;
    SCOPED_TRACE(s.trace());
    Case c;
    c.dtype = dt, c.batch = 2, c.nq = 37, c.nk = 45, c.hq = 2, c.hkv = 1, c.d = 64;
    c.options.causal = true;
    c.options.return_lse = true;
    SCOPED_TRACE(c.name());
    CaseTensors t = make_case(c, s.rng, /*with_backward=*/true);
    const Options opt = c.options;
    run_forward(t, opt);
    run_backward(t, opt);

    const auto es = static_cast<std::int64_t>(element_size(dt));
    Reserved big(static_cast<std::size_t>((2 * kSlot) * es));
    Reserved lse_region(static_cast<std::size_t>((2 * kSlot) * 4));
    ASSERT_NE(big.p, MAP_FAILED) << "mmap of " << 2 * kSlot * es << " bytes (MAP_NORESERVE) failed";
    ASSERT_NE(lse_region.p, MAP_FAILED);
    // Within a slot: q, k, v, out, dout, dq, dk, dv one after the other (8192-element aligned).
    const std::int64_t qn = c.nq * c.hq * c.d, kn = c.nk * c.hkv * c.d;
    std::int64_t base = 0;
    auto next = [&](std::int64_t n) {
      const std::int64_t b = base;
      base += (n + 8191) / 8192 * 8192;
      return b;
    };
    const TensorView q = slot_view(big, dt, next(qn), c.nq, c.hq, c.d), k = slot_view(big, dt, next(kn), c.nk, c.hkv, c.d),
                     v = slot_view(big, dt, next(kn), c.nk, c.hkv, c.d), out = slot_view(big, dt, next(qn), c.nq, c.hq, c.d),
                     dout = slot_view(big, dt, next(qn), c.nq, c.hq, c.d), dq = slot_view(big, dt, next(qn), c.nq, c.hq, c.d),
                     dk = slot_view(big, dt, next(kn), c.nk, c.hkv, c.d), dv = slot_view(big, dt, next(kn), c.nk, c.hkv, c.d);
    // lse (B, Hq, Nq) fp32 with the same batch stride.
    const TensorView lse = TensorView::strided(lse_region.p, DType::f32, {2, c.hq, c.nq}, {kSlot, c.nq, 1});
    EXPECT_GT(q.stride[0] + (c.nq - 1) * q.stride[1], std::int64_t{1} << 31);
    copy(t.q, q, true), copy(t.k, k, true), copy(t.v, v, true), copy(t.dout, dout, true);
    for (const TensorView* o : {&out, &dq, &dk, &dv})  // poison: an unwritten element fails below
      for (std::int64_t b = 0; b < 2; ++b)
        for (std::int64_t i = 0; i < o->shape[1] * o->shape[2] * o->shape[3]; ++i)
          store_double(o->data, o->dtype, b * kSlot + i, std::numeric_limits<double>::quiet_NaN());

    ForwardArgs fa;
    fa.q = q, fa.k = k, fa.v = v, fa.out = out, fa.lse = lse;
    ASSERT_NO_THROW(flatattn::forward(fa, opt));
    BackwardArgs ba;
    ba.dout = dout, ba.q = q, ba.k = k, ba.v = v, ba.out = out, ba.lse = lse, ba.dq = dq, ba.dk = dk, ba.dv = dv;
    ASSERT_NO_THROW(flatattn::backward(ba, opt));

    // Bitwise against the compact run (same engine, same plan: the results cannot depend on the offsets).
    for (auto [x, view, name] : {std::tuple{&t.out, out, "out"}, std::tuple{&t.dq, dq, "dq"},
                                 std::tuple{&t.dk, dk, "dk"}, std::tuple{&t.dv, dv, "dv"}}) {
      HostTensor got = HostTensor::poisoned_like(*x, dt);
      copy(got, view, false);
      std::int64_t diff = 0;
      for (std::int64_t i = 0; i < x->numel(); ++i) {
        const double a = got.at(i), b = x->at(i);
        diff += !(a == b || (std::isnan(a) && std::isnan(b)));
      }
      EXPECT_EQ(diff, 0) << name << ": elements differing from the compact run";
    }
    std::int64_t lse_diff = 0;
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t h = 0; h < c.hq; ++h)
        for (std::int64_t i = 0; i < c.nq; ++i) {
          const double a = load_double(lse.data, DType::f32, b * kSlot + h * c.nq + i);
          const double r = t.lse.at((b * c.hq + h) * c.nq + i);
          lse_diff += !(a == r);
        }
    EXPECT_EQ(lse_diff, 0) << "lse";
  }
}

}  // namespace
