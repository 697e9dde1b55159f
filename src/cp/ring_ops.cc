// The ring's elementwise work (ring_ops.h): the CPU loops, and the dispatch to ring_ops.cu for CUDA views.
#include "src/cp/ring_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "src/core/half.h"

namespace flatattn::cp {

namespace {

bool on_cuda(const TensorView& t) { return t.device.kind == DeviceKind::cuda; }

float load(const TensorView& t, std::int64_t off) {
  const auto* p = static_cast<const unsigned char*>(t.data);
  switch (t.dtype) {
    case DType::f16: return f16_to_float(reinterpret_cast<const std::uint16_t*>(p)[off]);
    case DType::bf16: return bf16_to_float(reinterpret_cast<const std::uint16_t*>(p)[off]);
    default: return reinterpret_cast<const float*>(p)[off];
  }
}

void store(const TensorView& t, std::int64_t off, float v) {
  auto* p = static_cast<unsigned char*>(t.data);
  switch (t.dtype) {
    case DType::f16: reinterpret_cast<std::uint16_t*>(p)[off] = float_to_f16(v); break;
    case DType::bf16: reinterpret_cast<std::uint16_t*>(p)[off] = float_to_bf16(v); break;
    default: reinterpret_cast<float*>(p)[off] = v;
  }
}

// Calls f(offset in a, offset in b) for every element of a's shape (rank <= 4; b has the same shape).
template <class F>
void each(const TensorView& a, const TensorView& b, F f) {
  std::int64_t s[4] = {1, 1, 1, 1}, sa[4] = {0, 0, 0, 0}, sb[4] = {0, 0, 0, 0};
  const int off = 4 - a.rank;
  for (int i = 0; i < a.rank; ++i) {
    s[off + i] = a.shape[i];
    sa[off + i] = a.stride[i];
    sb[off + i] = b.stride[i];
  }
  for (std::int64_t i0 = 0; i0 < s[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < s[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < s[2]; ++i2)
        for (std::int64_t i3 = 0; i3 < s[3]; ++i3)
          f(i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3], i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]);
}

}  // namespace

Buffer::Buffer(Device device, std::size_t bytes) : device_(device) {
  if (bytes == 0) bytes = 1;
  if (device.kind == DeviceKind::cuda) {
    data_ = cuda_ops::alloc(device.index, bytes);
  } else {
    data_ = ::operator new(bytes, std::align_val_t{64});
  }
}

Buffer::~Buffer() {
  if (!data_) return;
  if (device_.kind == DeviceKind::cuda) {
    cuda_ops::release(device_.index, data_);
  } else {
    ::operator delete(data_, std::align_val_t{64});
  }
}

Buffer::Buffer(Buffer&& o) noexcept : device_(o.device_), data_(std::exchange(o.data_, nullptr)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  std::swap(device_, o.device_);
  std::swap(data_, o.data_);
  return *this;
}

void fill(const TensorView& dst, float value, Stream stream) {
  if (on_cuda(dst)) return cuda_ops::fill(dst, value, stream);
  each(dst, dst, [&](std::int64_t o, std::int64_t) { store(dst, o, value); });
}

void copy(const TensorView& dst, const TensorView& src, Stream stream) {
  if (on_cuda(dst)) return cuda_ops::copy(dst, src, stream);
  each(dst, src, [&](std::int64_t o, std::int64_t i) { store(dst, o, load(src, i)); });
}

void add(const TensorView& dst, const TensorView& src, Stream stream) {
  if (on_cuda(dst)) return cuda_ops::add(dst, src, stream);
  each(dst, src, [&](std::int64_t o, std::int64_t i) { store(dst, o, load(dst, o) + load(src, i)); });
}

void merge(const TensorView& acc_out, const TensorView& acc_lse, const TensorView& out, const TensorView& lse,
           Stream stream) {
  if (on_cuda(acc_out)) return cuda_ops::merge(acc_out, acc_lse, out, lse, stream);
  const std::int64_t B = acc_out.shape[0], n = acc_out.shape[1], H = acc_out.shape[2], D = acc_out.shape[3];
  auto* al = static_cast<float*>(acc_lse.data);
  const auto* nl = static_cast<const float*>(lse.data);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < n; ++i) {
        float& la = al[b * acc_lse.stride[0] + h * acc_lse.stride[1] + i * acc_lse.stride[2]];
        const float ln = nl[b * lse.stride[0] + h * lse.stride[1] + i * lse.stride[2]];
        const float hi = std::max(la, ln);
        if (hi == -std::numeric_limits<float>::infinity()) continue;  // empty in both: O = 0, L = -inf stay
        const float l = hi + std::log(std::exp(la - hi) + std::exp(ln - hi));
        const float wa = std::exp(la - l), wn = std::exp(ln - l);
        for (std::int64_t d = 0; d < D; ++d) {
          const std::int64_t oa = b * acc_out.stride[0] + i * acc_out.stride[1] + h * acc_out.stride[2] + d;
          const std::int64_t on = b * out.stride[0] + i * out.stride[1] + h * out.stride[2] + d;
          store(acc_out, oa, load(acc_out, oa) * wa + load(out, on) * wn);
        }
        la = l;
      }
}

void copy_bytes(void* dst, const void* src, std::size_t bytes, Device device, Stream stream) {
  if (device.kind == DeviceKind::cuda) return cuda_ops::copy_bytes(dst, src, bytes, device.index, stream);
  std::memcpy(dst, src, bytes);
}

void synchronize(Device device, Stream stream) {
  if (device.kind == DeviceKind::cuda) cuda_ops::synchronize(device.index, stream);
}

}  // namespace flatattn::cp
