// Owning host tensors of the checks (tests and `flatattn check`): free strides and padding, deterministic
// random fill, NaN poisoning, element access as double whatever the dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "flatattn/tensor.h"

namespace flatattn::check {

/// std::allocator with 64-byte alignment (a cache line, the widest vector the CPU engine loads).
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const Aligned64<U>&) const noexcept { return true; }
};

/// An owning host buffer with a tensor view over it. Physical layout: the logical dims stored in the
/// order `perm` (outermost first), with `pad` extra elements after each run of the innermost dim.
/// Storage is 64-byte aligned and zero-filled by make(). Copyable (a deep copy).
struct HostTensor {
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape, stride;              ///< logical dims; strides in elements
  std::vector<unsigned char, Aligned64<unsigned char>> storage;  ///< bytes(), padding included

  /// A tensor of logical dims `shape` (row-major unless perm says otherwise) and dtype.
  static HostTensor make(DType dtype, std::vector<std::int64_t> shape, std::vector<int> perm = {},
                         std::int64_t pad = 0);
  /// A tensor with x's shape (contiguous) in `dtype`, poisoned.
  static HostTensor poisoned_like(const HostTensor& x, DType dtype);

  [[nodiscard]] TensorView view(Device device = Device::cpu()) const;
  [[nodiscard]] void* data() { return storage.data(); }
  [[nodiscard]] const void* data() const { return storage.data(); }
  [[nodiscard]] std::int64_t numel() const;
  [[nodiscard]] std::size_t bytes() const { return storage.size(); }
  /// Offset in elements of a logical row-major index (0..numel-1).
  [[nodiscard]] std::int64_t offset(std::int64_t logical) const;
  /// Element at a logical row-major index, as double.
  [[nodiscard]] double at(std::int64_t logical) const;
  void set(std::int64_t logical, double v);
  /// N(0, sd^2) values rounded to the dtype, from a counter-based generator: the same seed gives the same
  /// tensor in every process and on every platform (the CLI's measurement processes rebuild their inputs).
  void fill_normal(std::uint64_t seed, double sd = 1.0);
  /// NaN everywhere (the storage padding included), so unwritten outputs fail.
  void poison();
  /// Number of logical elements that are NaN or infinite.
  [[nodiscard]] std::int64_t count_nonfinite() const;
};

}  // namespace flatattn::check
