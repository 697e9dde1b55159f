// Host-side launch helpers shared by the forward and backward launchers (included only by the
// generated instance files): the grid-size limit and the dynamic shared-memory opt-in.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <string>

#include "flatattn/error.h"
#include "src/cuda/runtime.h"

namespace flatattn::cuda {

/// Throws unless `ctas` thread blocks fit one launch; `what` describes how they are counted.
inline void check_grid(std::int64_t ctas, const std::string& what) {
  if (ctas > INT_MAX) {
    throw Error(Error::Kind::unsupported, "q", what + " = " + std::to_string(ctas) + " thread blocks",
                "at most 2^31 - 1 thread blocks per call", "split the batch into several calls");
  }
}

/// Checks `smem_bytes` against the device's per-block limit and raises the kernel's dynamic shared
/// memory limit once per device (`attr_done`: one bit per device ordinal).
template <class Kernel>
void prepare_smem(Kernel kernel, int smem_bytes, int device, std::atomic<std::uint64_t>& attr_done) {
  const DeviceInfo& dev = device_info(device);
  if (smem_bytes > dev.smem_optin) {
    throw Error(Error::Kind::unsupported, "q", "a kernel needing " + std::to_string(smem_bytes) + " bytes of shared memory",
                "this GPU (" + dev.name + ") allows " + std::to_string(dev.smem_optin) + " bytes per block",
                "report it: the tile table of this GPU's family must fit it (src/cuda/policy/tile_size.h)");
  }
  const std::uint64_t bit = std::uint64_t{1} << (device & 63);
  if (smem_bytes > 48 * 1024 && !(attr_done.load(std::memory_order_acquire) & bit)) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
          "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
    attr_done.fetch_or(bit, std::memory_order_acq_rel);
  }
}

}  // namespace flatattn::cuda
