// Public entry points: validate, then hand the normalized problem to the backend of the tensors' device.
#include <algorithm>
#include <string>

#include "flatattn/attention.h"
#include "flatattn/version.h"
#include "src/core/backend.h"
#include "src/core/validate.h"

namespace flatattn {

namespace {

/// Options::fp32_matmul = bf16 is served by the CPU engine only (src/cpu/amx/detect.cc): the CUDA kernels take
/// f16/bf16 inputs, so there is no f32 product to relax; refused rather than ignored.
void check_fp32_matmul_cuda(const Problem& p) {
  if (p.fp32_matmul == Fp32Matmul::exact) return;
  throw Error(Error::Kind::unsupported, "fp32_matmul", std::string(name(p.fp32_matmul)) + " on a CUDA device",
              "a CPU engine option (the CUDA kernels have no f32 inputs to multiply in bf16)",
              "leave Options::fp32_matmul at exact for CUDA tensors (pass bf16 or f16 tensors instead)");
}

}  // namespace

Report forward(const ForwardArgs& args, const Options& options, Stream stream) {
  const ValidatedForward v = validate_forward(args, options);
  if (v.problem.device.kind == DeviceKind::cpu) return cpu::forward(v.problem, v.tensors);
  check_fp32_matmul_cuda(v.problem);
  return cuda::forward(v.problem, v.tensors, stream);
}

Report backward(const BackwardArgs& args, const Options& options, Stream stream) {
  const ValidatedBackward v = validate_backward(args, options);
  if (v.problem.device.kind == DeviceKind::cpu) return cpu::backward(v.problem, v.tensors);
  check_fp32_matmul_cuda(v.problem);
  return cuda::backward(v.problem, v.tensors, stream);
}

void check_errors(Device device, Stream stream) {
  if (device.kind == DeviceKind::cpu) return;
  require(device.index >= 0, "device", "cuda:" + std::to_string(device.index), "must be a CUDA device index >= 0",
          "pass the device of the tensors of the calls to check");
  cuda::check_errors(device.index, stream);
}

double forward_flops(std::int64_t batch, std::int64_t nq, std::int64_t nk, std::int64_t hq, std::int64_t d,
                     const Options& options) {
  const MaskSpec m = mask_spec(options);
  double visible = 0;
  if (!m.masked()) {
    visible = static_cast<double>(nq) * static_cast<double>(nk);
  } else {
    for (std::int64_t i = 0; i < nq; ++i) visible += static_cast<double>(std::max<std::int64_t>(0, m.hi(i, nq, nk) - m.lo(i, nq, nk) + 1));
  }
  return 4.0 * static_cast<double>(batch) * static_cast<double>(hq) * static_cast<double>(d) * visible;
}

}  // namespace flatattn

namespace flatattn {
bool cuda_built() { return cuda::built(); }
}  // namespace flatattn
