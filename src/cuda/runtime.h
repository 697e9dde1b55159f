// Small host helpers around the CUDA runtime: checked calls that throw flatattn::Error, the current
// device's properties (cached), and a guard that selects a device for one call.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "flatattn/error.h"

namespace flatattn::cuda {

/// Throws Error(runtime, what, cudaGetErrorString(e), ...) when e != cudaSuccess.
void check(cudaError_t e, const char* what);

struct DeviceInfo {
  int index = 0;
  int cc = 0;          ///< compute capability, major * 10 + minor
  int sm_count = 0;
  int smem_optin = 0;  ///< max dynamic shared memory per block (opt-in), bytes
  std::string name;
};

/// Properties of device `index`, read once per process.
const DeviceInfo& device_info(int index);

/// Makes `index` current for its lifetime, restoring the previous device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

}  // namespace flatattn::cuda
