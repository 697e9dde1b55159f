#include "src/check/host_tensor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "src/core/half.h"
#include "src/reference/parallel.h"

namespace flatattn::check {

HostTensor HostTensor::make(DType dtype, std::vector<std::int64_t> shape, std::vector<int> perm, std::int64_t pad) {
  HostTensor t;
  t.dtype = dtype;
  t.shape = shape;
  const int r = static_cast<int>(shape.size());
  if (perm.empty()) {
    perm.resize(r);
    std::iota(perm.begin(), perm.end(), 0);
  }
  t.stride.assign(r, 0);
  std::int64_t st = 1;
  for (int i = r - 1; i >= 0; --i) {
    const int dim = perm[i];
    t.stride[dim] = st;
    st *= shape[dim] + (i == r - 1 ? pad : 0);
  }
  t.storage.assign(static_cast<std::size_t>(std::max<std::int64_t>(st, 1)) * element_size(dtype), 0);
  return t;
}

HostTensor HostTensor::poisoned_like(const HostTensor& x, DType dtype) {
  HostTensor t = make(dtype, x.shape);
  t.poison();
  return t;
}

TensorView HostTensor::view(Device device) const {
  TensorView v;
  v.data = const_cast<unsigned char*>(storage.data());
  v.dtype = dtype;
  v.device = device;
  v.rank = static_cast<int>(shape.size());
  for (int i = 0; i < v.rank; ++i) {
    v.shape[i] = shape[i];
    v.stride[i] = stride[i];
  }
  return v;
}

std::int64_t HostTensor::numel() const {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::int64_t HostTensor::offset(std::int64_t logical) const {
  std::int64_t off = 0;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    off += (logical % shape[i]) * stride[i];
    logical /= shape[i];
  }
  return off;
}

double HostTensor::at(std::int64_t logical) const { return load_double(storage.data(), dtype, offset(logical)); }

void HostTensor::set(std::int64_t logical, double v) { store_double(storage.data(), dtype, offset(logical), v); }

namespace {
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
double unit(std::uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
}  // namespace

void HostTensor::fill_normal(std::uint64_t seed, double sd) {
  const std::int64_t n = numel();
  const std::uint64_t base = splitmix64(seed);
  constexpr double two_pi = 6.283185307179586;
  // Pairs in parallel: each is a function of its index alone (the same tensor for any thread count).
  ref::parallel_ranges((n + 1) / 2, 1 << 15, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = 2 * lo; i < std::min(n, 2 * hi); i += 2) {  // Box-Muller: two normals per pair of uniforms
      const double u1 = unit(splitmix64(base + 2 * static_cast<std::uint64_t>(i)));
      const double u2 = unit(splitmix64(base + 2 * static_cast<std::uint64_t>(i) + 1));
      const double r = sd * std::sqrt(-2.0 * std::log(u1));
      set(i, r * std::cos(two_pi * u2));
      if (i + 1 < n) set(i + 1, r * std::sin(two_pi * u2));
    }
  });
}

void HostTensor::poison() {
  const std::int64_t n = static_cast<std::int64_t>(storage.size() / element_size(dtype));
  for (std::int64_t i = 0; i < n; ++i) store_double(storage.data(), dtype, i, std::numeric_limits<double>::quiet_NaN());
}

std::int64_t HostTensor::count_nonfinite() const {
  std::int64_t bad = 0;
  const std::int64_t n = numel();
  for (std::int64_t i = 0; i < n; ++i) bad += !std::isfinite(at(i));
  return bad;
}

}  // namespace flatattn::check
