// Owning tensors of the CLI: host tensors of the checks (src/check/host_tensor.h: free strides and
// padding, deterministic random fill, NaN poisoning) and their device copies for --device cuda.
#pragma once

#include <memory>
#include <vector>

#include "flatattn/tensor.h"
#include "src/check/host_tensor.h"

namespace flatattn::cli {

/// A device copy of a host tensor's whole storage (its strides, padding and poison travel with it).
class DeviceMirror {
 public:
  void upload(const check::HostTensor& h);  ///< host -> device (allocated on first use)
  void download(check::HostTensor& h) const;  ///< device -> host
  /// h's view over the device copy.
  [[nodiscard]] TensorView view(const check::HostTensor& h) const;

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> ptr_;
};

/// A host tensor with its own device mirror.
class Tensor : public check::HostTensor {
 public:
  Tensor() = default;
  explicit Tensor(check::HostTensor host) : check::HostTensor(std::move(host)) {}
  /// check::HostTensor::make: logical dims `shape`, stored in the order `perm` with `pad` elements after
  /// each run of the innermost dim.
  static Tensor make(DType dtype, std::vector<std::int64_t> shape, std::vector<int> perm = {}, std::int64_t pad = 0) {
    return Tensor(check::HostTensor::make(dtype, std::move(shape), std::move(perm), pad));
  }

  /// View of the host storage, or of the device mirror for DeviceKind::cuda (upload() first).
  [[nodiscard]] TensorView view(DeviceKind where = DeviceKind::cpu) const {
    return where == DeviceKind::cuda ? device_.view(*this) : HostTensor::view(Device::cpu());
  }
  void upload() { device_.upload(*this); }
  void download() { device_.download(*this); }

 private:
  DeviceMirror device_;
};

}  // namespace flatattn::cli
