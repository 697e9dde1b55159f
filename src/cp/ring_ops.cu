// The ring's elementwise work on CUDA (ring_ops.h): strided (B, n, H, D) / (B, H, n) views, one thread per
// element (merge: per row), fp32 arithmetic; buffers and copies through the runtime.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "src/cp/ring_ops.h"

namespace flatattn::cp::cuda_ops {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(Error::Kind::runtime, what, cudaGetErrorString(e), "the CUDA runtime call failed",
                "check the device and the tensors' memory");
}

struct V4 {  // a view as the kernels see it: rank padded to 4 at the front
  char* data;
  int dtype;  // DType
  long long shape[4], stride[4];
};

V4 pack(const TensorView& t) {
  V4 v{static_cast<char*>(t.data), static_cast<int>(t.dtype), {1, 1, 1, 1}, {0, 0, 0, 0}};
  const int off = 4 - t.rank;
  for (int i = 0; i < t.rank; ++i) {
    v.shape[off + i] = t.shape[i];
    v.stride[off + i] = t.stride[i];
  }
  return v;
}

__device__ float load(const V4& v, long long off) {
  switch (v.dtype) {
    case static_cast<int>(DType::f16): return __half2float(reinterpret_cast<const __half*>(v.data)[off]);
    case static_cast<int>(DType::bf16): return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(v.data)[off]);
    default: return reinterpret_cast<const float*>(v.data)[off];
  }
}

__device__ void store(const V4& v, long long off, float x) {
  switch (v.dtype) {
    case static_cast<int>(DType::f16): reinterpret_cast<__half*>(v.data)[off] = __float2half_rn(x); break;
    case static_cast<int>(DType::bf16): reinterpret_cast<__nv_bfloat16*>(v.data)[off] = __float2bfloat16_rn(x); break;
    default: reinterpret_cast<float*>(v.data)[off] = x;
  }
}

__device__ long long offset(const V4& v, long long i) {  // the element of row-major index i
  long long off = 0;
  for (int d = 3; d >= 0; --d) {
    off += (i % v.shape[d]) * v.stride[d];
    i /= v.shape[d];
  }
  return off;
}

enum Op { kFill, kCopy, kAdd };

__global__ void elementwise(V4 dst, V4 src, float value, int op, long long n) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long o = offset(dst, i);
    if (op == kFill) {
      store(dst, o, value);
    } else if (op == kCopy) {
      store(dst, o, load(src, offset(src, i)));
    } else {
      store(dst, o, load(dst, o) + load(src, offset(src, i)));
    }
  }
}

// One thread per (b, i, h) row: the LSE merge reads the row's old L_acc before writing the new one.
__global__ void merge_rows(V4 acc, V4 acc_lse, V4 out, V4 lse) {
  const long long rows = acc.shape[0] * acc.shape[1] * acc.shape[2];
  for (long long r = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long h = r % acc.shape[2], i = (r / acc.shape[2]) % acc.shape[1], b = r / (acc.shape[1] * acc.shape[2]);
    float* la = reinterpret_cast<float*>(acc_lse.data) + b * acc_lse.stride[1] + h * acc_lse.stride[2] +
                i * acc_lse.stride[3];
    const float ln = reinterpret_cast<const float*>(lse.data)[b * lse.stride[1] + h * lse.stride[2] + i * lse.stride[3]];
    const float hi = fmaxf(*la, ln);
    if (hi == -INFINITY) continue;
    const float l = hi + logf(expf(*la - hi) + expf(ln - hi));
    const float wa = expf(*la - l), wn = expf(ln - l);
    for (long long d = 0; d < acc.shape[3]; ++d) {
      const long long oa = b * acc.stride[0] + i * acc.stride[1] + h * acc.stride[2] + d;
      const long long on = b * out.stride[0] + i * out.stride[1] + h * out.stride[2] + d;
      store(acc, oa, load(acc, oa) * wa + load(out, on) * wn);
    }
    *la = l;
  }
}

int grid(long long n) {
  const long long g = (n + 255) / 256;
  return static_cast<int>(g < 4096 ? (g < 1 ? 1 : g) : 4096);
}

void launch(const TensorView& dst, const TensorView& src, float value, int op, Stream stream) {
  const long long n = dst.numel();
  if (n == 0) return;
  check(cudaSetDevice(dst.device.index), "cudaSetDevice");
  elementwise<<<grid(n), 256, 0, static_cast<cudaStream_t>(stream.handle)>>>(pack(dst), pack(src.present() ? src : dst),
                                                                              value, op, n);
  check(cudaGetLastError(), "ring elementwise kernel");
}

}  // namespace

void* alloc(int device, std::size_t bytes) {
  check(cudaSetDevice(device), "cudaSetDevice");
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc (ring buffers)");
  return p;
}

void release(int device, void* p) {
  cudaSetDevice(device);
  cudaFree(p);  // synchronizes the device: the ring's buffers are no longer used by queued work
}

void fill(const TensorView& dst, float value, Stream stream) { launch(dst, TensorView{}, value, kFill, stream); }
void copy(const TensorView& dst, const TensorView& src, Stream stream) { launch(dst, src, 0.0f, kCopy, stream); }
void add(const TensorView& dst, const TensorView& src, Stream stream) { launch(dst, src, 0.0f, kAdd, stream); }

void merge(const TensorView& acc_out, const TensorView& acc_lse, const TensorView& out, const TensorView& lse,
           Stream stream) {
  const long long rows = acc_out.shape[0] * acc_out.shape[1] * acc_out.shape[2];
  if (rows == 0) return;
  check(cudaSetDevice(acc_out.device.index), "cudaSetDevice");
  merge_rows<<<grid(rows), 256, 0, static_cast<cudaStream_t>(stream.handle)>>>(pack(acc_out), pack(acc_lse), pack(out),
                                                                               pack(lse));
  check(cudaGetLastError(), "ring merge kernel");
}

void copy_bytes(void* dst, const void* src, std::size_t bytes, int device, Stream stream) {
  check(cudaSetDevice(device), "cudaSetDevice");
  const auto s = static_cast<cudaStream_t>(stream.handle);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s), "cudaMemcpyAsync (ring)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize (ring)");
}

void synchronize(int device, Stream stream) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream.handle)), "cudaStreamSynchronize (ring)");
}

}  // namespace flatattn::cp::cuda_ops
