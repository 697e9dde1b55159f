// DLPack tensors (nanobind ndarrays) -> flatattn::TensorView, zero-copy.
// Any producer that speaks DLPack works: numpy (CPU), torch and CuPy (CPU or CUDA).
#pragma once

#include <nanobind/ndarray.h>

#include <optional>
#include <string>

#include "flatattn/attention.h"

namespace flatattn::py {

namespace nb = nanobind;

/// Input tensors are imported read-only (so read-only numpy views are accepted); outputs writable.
using In = nb::ndarray<nb::ro>;
using Out = nb::ndarray<>;

/// The flatattn dtype of a DLPack dtype; an unsupported one is an Error naming `argument`.
DType dtype_of(nb::dlpack::dtype t, const char* argument);

/// The flatattn device of a DLPack device; pinned host memory counts as CPU.
Device device_of(int device_type, int device_id, const char* argument);

/// A view over the array's memory with its shape and element strides (rank <= 4).
template <typename Array>
TensorView view_of(const Array& a, const char* argument);

template <typename Array>
TensorView view_of(const std::optional<Array>& a, const char* argument) {
  return a ? view_of(*a, argument) : TensorView{};
}

}  // namespace flatattn::py
