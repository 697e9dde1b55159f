// Runs a harness case (tests/common/harness.h) on the GPU: the host tensors are copied to the device
// byte for byte (so their strides and padding, and the poison in out/lse, travel too), forward() runs
// on the device views, and out/lse come back into the case for judge() against the oracle.
#pragma once

#include <string>

#include "flatattn/attention.h"
#include "tests/common/harness.h"

namespace flatattn::testing {

/// True when a CUDA device is present (tests GTEST_SKIP otherwise).
bool gpu_present();

/// forward() of the case on device 0 (optionally on a fresh non-default stream); out and lse of `t`
/// are overwritten with the device results.
Report run_on_gpu(CaseTensors& t, bool own_stream = false);

/// Runs the case on the GPU and judges out (and LSE when requested) against the fp64 oracle with the
/// design.md rule; adds failures naming the case, the kernel and the seed.
void check_case(CaseTensors& t, std::uint64_t seed, const char* what = "");

/// Whether device 0 runs `dtype` (false for bf16 when only the compute_75 PTX family loads).
bool dtype_runs(DType dtype);

}  // namespace flatattn::testing
