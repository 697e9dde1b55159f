#include "tests/common/yardstick.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "tests/common/naive_fp32.h"

namespace flatattn::testing {

BackwardYardstick naive_backward(const CaseTensors& t, const BackwardOracle& r) {
  BackwardYardstick y;
  BackwardOracle& o = y.naive;
  o = naive_lowp_backward(t);
  // Per gradient, the worst of the input-precision yardstick and the unfused FA2 formulation on the
  // backward's own inputs (D_i from the stored O: in fp16/bf16 O's rounding moves D_i by up to
  // u * sum_d |dO_id O_id|, which no implementation of backward(dO, Q, K, V, O, LSE) can undo and which
  // the softmax-form yardstick does not see; naive_fp32.h says more). fp32 also takes naive fp32 autograd
  // and the dS rounding noise.
  const bool fp32 = t.c.dtype == DType::f32;
  for (NaiveMethod m : {NaiveMethod::autograd, NaiveMethod::lse}) {
    if (!fp32 && m != NaiveMethod::lse) continue;
    NaiveFp32Grads f = naive_fp32_backward(t, m);
    if (fp32) {
      y.noise_dq = std::max(y.noise_dq, f.dq_noise);
      y.noise_dk = std::max(y.noise_dk, f.dk_noise);
    }
    for (auto [yard, fp32, ref] : {std::tuple{&o.dq, &f.dq, &r.dq}, std::tuple{&o.dk, &f.dk, &r.dk},
                                   std::tuple{&o.dv, &f.dv, &r.dv}})
      if (judge(*fp32, *ref, nullptr, DType::f32).max_err > judge(*yard, *ref, nullptr, DType::f32).max_err)
        *yard = std::move(*fp32);
  }
  return y;
}

}  // namespace flatattn::testing
