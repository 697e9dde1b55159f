// The low-precision yardstick of a backward check, shared by the CPU and CUDA suites (docs/design.md's rule
// compares a kernel's error with the error of naive attention in the input precision; for gradients the
// naive computation is taken in two forms and the worse one, per gradient, is the yardstick).
#pragma once

#include "tests/common/harness.h"

namespace flatattn::testing {

/// The yardstick of a backward check: per gradient the worse of naive input-precision gradients and the
/// unfused FA2 formulation on the stored O and LSE, and for f32 an absolute allowance per gradient for
/// the rounding noise of dS (naive_fp32.h: NaiveFp32Grads).
struct BackwardYardstick {
  BackwardOracle naive;
  double noise_dq = 0, noise_dk = 0;
};

/// Per gradient the worst of ref::backward with Precision::input (naive_lowp_backward) and the unfused fp32
/// FA2 formulation on the case's stored out/lse (run the forward first: t.out and t.lse are read); for f32
/// also naive fp32 autograd, with their dS rounding noise. ref: oracle_backward(t), which picks the worse.
BackwardYardstick naive_backward(const CaseTensors& t, const BackwardOracle& ref);

}  // namespace flatattn::testing
