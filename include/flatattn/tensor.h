// flatattn: non-owning strided tensor views.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>

#include "flatattn/dtype.h"

namespace flatattn {

/// A non-owning view of a strided tensor of rank 1..4.
///
/// Strides are in elements (not bytes). Attention requires the last dimension to be
/// contiguous (stride 1); every other stride is free, so a (B, H, N, D) tensor is passed
/// as a (B, N, H, D) view with permuted strides. A default-constructed view (rank 0)
/// means "absent" (an optional output such as LSE that is not requested).
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device{};
  int rank = 0;
  std::array<std::int64_t, 4> shape{};
  std::array<std::int64_t, 4> stride{};  ///< in elements

  /// True when the view names a tensor (rank >= 1).
  [[nodiscard]] bool present() const { return rank > 0; }

  /// Number of elements (1 for rank 0 is not meaningful: returns 0 for an absent view).
  [[nodiscard]] std::int64_t numel() const {
    if (rank == 0) return 0;
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }

  /// A row-major contiguous view.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               Device device = Device::cpu()) {
    TensorView t;
    t.data = data;
    t.dtype = dtype;
    t.device = device;
    t.rank = static_cast<int>(shape.size());
    int i = 0;
    for (auto s : shape) t.shape[i++] = s;
    std::int64_t st = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
      t.stride[d] = st;
      st *= t.shape[d];
    }
    return t;
  }

  /// A view with explicit strides (in elements); shape and stride must have equal length.
  static TensorView strided(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                            std::initializer_list<std::int64_t> stride, Device device = Device::cpu()) {
    TensorView t = contiguous(data, dtype, shape, device);
    int i = 0;
    for (auto s : stride) {
      if (i < 4) t.stride[i] = s;
      ++i;
    }
    if (i != t.rank) t.rank = -1;  // rejected by validation with a message naming the view
    return t;
  }
};

}  // namespace flatattn
