#include "cli/buffers.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

#include "cli/device.h"
#include "src/core/half.h"

namespace flatattn::cli {

void Tensor::HostFree::operator()(unsigned char* p) const { std::free(p); }
void Tensor::DeviceFree::operator()(void* p) const { gpu::release(p); }

Tensor Tensor::make(DType dtype, std::vector<std::int64_t> shape, std::vector<int> perm, std::int64_t pad) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  const int r = static_cast<int>(shape.size());
  if (perm.empty()) {
    perm.resize(r);
    std::iota(perm.begin(), perm.end(), 0);
  }
  t.stride_.assign(r, 0);
  std::int64_t st = 1;
  for (int i = r - 1; i >= 0; --i) {
    t.stride_[perm[i]] = st;
    st *= shape[perm[i]] + (i == r - 1 ? pad : 0);
  }
  t.bytes_ = static_cast<std::size_t>(std::max<std::int64_t>(st, 1)) * element_size(dtype);
  const std::size_t alloc = (t.bytes_ + 63) / 64 * 64;
  t.host_.reset(static_cast<unsigned char*>(std::aligned_alloc(64, alloc)));
  if (!t.host_) throw std::bad_alloc();
  return t;
}

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (auto s : shape_) n *= s;
  return n;
}

std::int64_t Tensor::offset(std::int64_t logical) const {
  std::int64_t off = 0;
  for (int i = static_cast<int>(shape_.size()) - 1; i >= 0; --i) {
    off += (logical % shape_[i]) * stride_[i];
    logical /= shape_[i];
  }
  return off;
}

double Tensor::at(std::int64_t logical) const { return load_double(host_.get(), dtype_, offset(logical)); }
void Tensor::set(std::int64_t logical, double v) { store_double(host_.get(), dtype_, offset(logical), v); }

namespace {
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
double unit(std::uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
}  // namespace

void Tensor::fill_normal(std::uint64_t seed, double sd) {
  const std::int64_t n = numel();
  const std::uint64_t base = splitmix64(seed);
  constexpr double two_pi = 6.283185307179586;
  for (std::int64_t i = 0; i < n; i += 2) {  // Box-Muller: two normals per pair of uniforms
    const double u1 = unit(splitmix64(base + 2 * static_cast<std::uint64_t>(i)));
    const double u2 = unit(splitmix64(base + 2 * static_cast<std::uint64_t>(i) + 1));
    const double r = sd * std::sqrt(-2.0 * std::log(u1));
    set(i, r * std::cos(two_pi * u2));
    if (i + 1 < n) set(i + 1, r * std::sin(two_pi * u2));
  }
}

void Tensor::poison() {
  const std::int64_t n = static_cast<std::int64_t>(bytes_ / element_size(dtype_));
  for (std::int64_t i = 0; i < n; ++i) store_double(host_.get(), dtype_, i, std::numeric_limits<double>::quiet_NaN());
}

std::int64_t Tensor::count_nonfinite() const {
  std::int64_t bad = 0;
  const std::int64_t n = numel();
  for (std::int64_t i = 0; i < n; ++i) bad += !std::isfinite(at(i));
  return bad;
}

TensorView Tensor::view(DeviceKind where) const {
  TensorView v;
  v.data = where == DeviceKind::cuda ? device_.get() : static_cast<void*>(host_.get());
  v.dtype = dtype_;
  v.device = where == DeviceKind::cuda ? Device::cuda(0) : Device::cpu();
  v.rank = static_cast<int>(shape_.size());
  for (int i = 0; i < v.rank; ++i) {
    v.shape[i] = shape_[i];
    v.stride[i] = stride_[i];
  }
  return v;
}

void Tensor::upload() {
  if (!device_) device_.reset(gpu::alloc(bytes_));
  gpu::to_device(device_.get(), host_.get(), bytes_);
}

void Tensor::download() { gpu::to_host(host_.get(), device_.get(), bytes_); }

}  // namespace flatattn::cli
