// Owning tensors of the CLI: host storage with free strides (and padding), deterministic random fill,
// NaN poisoning, and a device mirror for --device cuda.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "flatattn/tensor.h"

namespace flatattn::cli {

class Tensor {
 public:
  Tensor() = default;
  /// Logical dims `shape`, stored in the order `perm` (outermost first, default row-major) with `pad`
  /// extra elements after each run of the innermost dim (non-contiguous views for `check`).
  static Tensor make(DType dtype, std::vector<std::int64_t> shape, std::vector<int> perm = {}, std::int64_t pad = 0);

  [[nodiscard]] DType dtype() const { return dtype_; }
  [[nodiscard]] const std::vector<std::int64_t>& shape() const { return shape_; }
  [[nodiscard]] const std::vector<std::int64_t>& stride() const { return stride_; }
  [[nodiscard]] std::int64_t numel() const;
  [[nodiscard]] std::size_t bytes() const { return bytes_; }
  [[nodiscard]] void* data() const { return host_.get(); }
  /// Storage offset (elements) of a logical row-major index.
  [[nodiscard]] std::int64_t offset(std::int64_t logical) const;
  [[nodiscard]] double at(std::int64_t logical) const;
  void set(std::int64_t logical, double v);

  /// N(0, sd^2) values rounded to the dtype, from a counter-based generator: the same seed gives the
  /// same tensor in every process (each measurement process rebuilds its inputs).
  void fill_normal(std::uint64_t seed, double sd = 1.0);
  /// NaN in every element (padding included), so unwritten outputs are caught.
  void poison();
  /// Number of logical elements that are NaN or infinite.
  [[nodiscard]] std::int64_t count_nonfinite() const;

  /// View of the host storage, or of the device mirror for DeviceKind::cuda (upload() first).
  [[nodiscard]] TensorView view(DeviceKind where = DeviceKind::cpu) const;
  void upload();    ///< host -> device mirror (allocated on first use)
  void download();  ///< device mirror -> host

 private:
  struct HostFree {
    void operator()(unsigned char* p) const;
  };
  struct DeviceFree {
    void operator()(void* p) const;
  };
  DType dtype_ = DType::f32;
  std::vector<std::int64_t> shape_, stride_;
  std::size_t bytes_ = 0;
  std::unique_ptr<unsigned char, HostFree> host_;
  std::unique_ptr<void, DeviceFree> device_;
};

}  // namespace flatattn::cli
