#include "views.h"

#include <string>

namespace flatattn::py {

namespace {
std::string dlpack_dtype_name(nb::dlpack::dtype t) {
  const char* kind = "?";
  switch (static_cast<nb::dlpack::dtype_code>(t.code)) {
    case nb::dlpack::dtype_code::Int: kind = "int"; break;
    case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
    case nb::dlpack::dtype_code::Float: kind = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
    case nb::dlpack::dtype_code::Bool: kind = "bool"; break;
    default: break;
  }
  std::string s = std::string(kind) + std::to_string(t.bits);
  if (t.lanes != 1) s += "x" + std::to_string(t.lanes);
  return s;
}
}  // namespace

DType dtype_of(nb::dlpack::dtype t, const char* argument) {
  using C = nb::dlpack::dtype_code;
  if (t.lanes == 1) {
    const auto code = static_cast<C>(t.code);
    if (code == C::Float && t.bits == 32) return DType::f32;
    if (code == C::Float && t.bits == 16) return DType::f16;
    if (code == C::Bfloat && t.bits == 16) return DType::bf16;
    if (code == C::Float && t.bits == 64) return DType::f64;
    if (code == C::Int && t.bits == 32) return DType::i32;
  }
  throw Error(Error::Kind::invalid_argument, argument, "dtype " + dlpack_dtype_name(t),
              "flatattn takes float32, float16 or bfloat16 tensors (float64 only for the oracle's outputs) "
              "and int32 cu_seqlens",
              "convert it, e.g. x.astype(np.float16) / x.to(torch.bfloat16) / cu_seqlens.to(torch.int32)");
}

Device device_of(int device_type, int device_id, const char* argument) {
  if (device_type == nb::device::cpu::value || device_type == nb::device::cuda_host::value) return Device::cpu();
  if (device_type == nb::device::cuda::value || device_type == nb::device::cuda_managed::value)
    return Device::cuda(device_id);
  throw Error(Error::Kind::unsupported, argument, "DLPack device type " + std::to_string(device_type),
              "flatattn runs on CPU memory and CUDA device memory", "move the tensor to the CPU or a CUDA GPU");
}

template <typename Array>
TensorView view_of(const Array& a, const char* argument) {
  TensorView t;
  const auto rank = static_cast<int>(a.ndim());
  if (rank < 1 || rank > 4)
    throw Error(Error::Kind::invalid_argument, argument, "rank " + std::to_string(rank),
                "attention tensors have rank 1 to 4: (B, N, H, D), (total, H, D), LSE (B, H, N) or (H, total)",
                "reshape the tensor to the documented layout");
  t.data = const_cast<void*>(static_cast<const void*>(a.data()));
  t.dtype = dtype_of(a.dtype(), argument);
  t.device = device_of(a.device_type(), a.device_id(), argument);
  t.rank = rank;
  for (int i = 0; i < rank; ++i) {
    t.shape[i] = static_cast<std::int64_t>(a.shape(i));
    t.stride[i] = a.stride(i);
  }
  return t;
}

template TensorView view_of<In>(const In&, const char*);
template TensorView view_of<Out>(const Out&, const char*);

}  // namespace flatattn::py
