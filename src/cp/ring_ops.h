// The ring's elementwise work on (B, n, H, D) / (B, H, n) views, on the CPU or on CUDA (ring_ops.cu): fp32
// accumulators, the LSE merge of partial outputs, dtype conversions, and the ring's own buffers.
#pragma once

#include <cstddef>

#include "flatattn/attention.h"

namespace flatattn::cp {

/// An owned, uninitialized buffer on a device (host memory for the CPU; cudaMalloc on CUDA).
class Buffer {
 public:
  Buffer() = default;
  Buffer(Device device, std::size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  [[nodiscard]] void* data() const { return data_; }

 private:
  Device device_{};
  void* data_ = nullptr;
};

/// dst (f32, rank <= 4) = value everywhere.
void fill(const TensorView& dst, float value, Stream stream);
/// dst = src converted to dst's dtype (same shape; f32, f16, bf16).
void copy(const TensorView& dst, const TensorView& src, Stream stream);
/// dst (f32) += src (same shape; any float dtype).
void add(const TensorView& dst, const TensorView& src, Stream stream);
/// The fp32 LSE merge of a partial result into an accumulator (FlashAttention-2's rescaling across blocks, Dao
/// 2023, Sec. 3.1): L = logaddexp(L_acc, L_new), O = O_acc e^(L_acc - L) + O_new e^(L_new - L), per row.
/// acc_out (B, n, H, D) f32, acc_lse (B, H, n) f32, out (B, n, H, D) any float dtype, lse (B, H, n) f32. A row
/// empty in both stays O = 0, L = -inf.
void merge(const TensorView& acc_out, const TensorView& acc_lse, const TensorView& out, const TensorView& lse,
           Stream stream);
/// Copies bytes between host memory and `device`'s memory, either way (CUDA: cudaMemcpyDefault on `stream`,
/// ordered after its work); returns when the copy is complete.
void copy_bytes(void* dst, const void* src, std::size_t bytes, Device device, Stream stream);
/// Waits for the stream (CUDA; nothing for the CPU).
void synchronize(Device device, Stream stream);

/// The CUDA implementations (ring_ops.cu; ring_ops_no_cuda.cc throws in a build without CUDA).
namespace cuda_ops {
void* alloc(int device, std::size_t bytes);
void release(int device, void* p);
void fill(const TensorView& dst, float value, Stream stream);
void copy(const TensorView& dst, const TensorView& src, Stream stream);
void add(const TensorView& dst, const TensorView& src, Stream stream);
void merge(const TensorView& acc_out, const TensorView& acc_lse, const TensorView& out, const TensorView& lse,
           Stream stream);
void copy_bytes(void* dst, const void* src, std::size_t bytes, int device, Stream stream);
void synchronize(int device, Stream stream);
}  // namespace cuda_ops

}  // namespace flatattn::cp
