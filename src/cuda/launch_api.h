// The host-side contract between dispatch (plain C++) and the kernel instances (nvcc): one function
// template, explicitly instantiated once per generated file in src/cuda/inst/, and the launch
// arguments it takes. No CUDA types here.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flatattn/attention.h"
#include "src/core/problem.h"
#include "src/core/variant.h"
#include "src/cuda/common/bwd_params.h"
#include "src/cuda/policy/tile_size.h"

namespace flatattn::cuda {

struct LaunchArgs {
  const Problem* problem = nullptr;
  const FwdTensors* tensors = nullptr;
  void* stream = nullptr;  ///< cudaStream_t
  int device = 0;
  unsigned* meta_err = nullptr;  ///< varlen: the metadata error word (src/cuda/meta_check.h)
};

/// What a launcher reports about itself (for Report and error messages).
struct LaunchInfo {
  int block_m = 0, block_n = 0;
  /// The kernel that ran when it is not the instance's own (FLATATTN_CUDA_SM90_WS: "..._ws1"); null otherwise.
  const char* kernel = nullptr;
};

/// Workspace of one backward call (stream-ordered allocation by dispatch): see BwdParams. One allocation
/// of `bytes` carved by `carve` into 256-byte aligned parts: the dQ accumulator (fp32; deterministic:
/// int32 fixed point, column pairs as 64-bit sums) and D_i, both written by the pre-pass;
/// deterministic also each row's unit (pre-pass) and the K/V maxima (zeroed by the launcher).
struct BwdWorkspace {
  float* dq_accum = nullptr;    ///< (Hq, B, Nq, kernel D) fp32; deterministic: int32 (column pairs as u64)
  float* dq_unit = nullptr;     ///< deterministic: (Hq, B, Nq)
  DqBound* dq_bound = nullptr;  ///< deterministic
  float* dsum = nullptr;        ///< (Hq, B, Nq) fp32

  /// rows = Hq * B * Nq; d = the kernel's head dim.
  static std::size_t bytes(std::size_t rows, int d, bool deterministic) {
    std::size_t total = 0;
    layout(nullptr, rows, d, deterministic, &total);
    return total;
  }
  /// `base`: an allocation of bytes(rows, d, deterministic), 256-byte aligned.
  static BwdWorkspace carve(unsigned char* base, std::size_t rows, int d, bool deterministic) {
    return layout(base, rows, d, deterministic, nullptr);
  }

 private:
  /// The parts in order, each 256-byte aligned; *total (if given) = the bytes they take.
  static BwdWorkspace layout(unsigned char* base, std::size_t rows, int d, bool deterministic, std::size_t* total) {
    BwdWorkspace w;
    std::size_t at = 0;
    auto take = [&](std::size_t n) {
      unsigned char* p = base == nullptr ? nullptr : base + at;
      at += (n + 255) / 256 * 256;
      return p;
    };
    w.dq_accum = reinterpret_cast<float*>(take(rows * static_cast<std::size_t>(d) * 4));
    w.dsum = reinterpret_cast<float*>(take(rows * 4));
    if (deterministic) {
      w.dq_unit = reinterpret_cast<float*>(take(rows * 4));
      w.dq_bound = reinterpret_cast<DqBound*>(take(sizeof(DqBound)));
    }
    if (total != nullptr) *total = at;
    return w;
  }
};

struct BwdLaunchArgs {
  const Problem* problem = nullptr;
  const BwdTensors* tensors = nullptr;
  BwdWorkspace ws;
  void* stream = nullptr;  ///< cudaStream_t
  int device = 0;
  unsigned* meta_err = nullptr;  ///< varlen: the metadata error word (src/cuda/meta_check.h)
};

/// Launches one instance: family F, dataflow DF, storage dtype DT, kernel head dim D, variant Var
/// (src/core/variant.h).
/// Defined in src/cuda/launch.cuh; one explicit instantiation per file of src/cuda/inst/.
template <Family F, Dataflow DF, DType DT, int D, VariantId Var>
LaunchInfo launch_fwd(const LaunchArgs& args);

/// Launches one backward instance (pre-pass, main kernel, dQ conversion) on args.stream. Defined in
/// src/cuda/launch_bwd.cuh; one explicit instantiation per bwd_* file of src/cuda/inst/.
template <Family F, DType DT, int D, VariantId Var>
LaunchInfo launch_bwd(const BwdLaunchArgs& args);

/// Probes whether a family's code can run on the current device (its object files carry a tiny kernel
/// built with the same targets). Returns a cudaError_t value (0 = loadable) and the kernel's PTX and
/// binary versions (cudaFuncAttributes::ptxVersion / binaryVersion).
int probe_sm80(int* ptx_version, int* binary_version);
int probe_sm86(int* ptx_version, int* binary_version);
int probe_sm75(int* ptx_version, int* binary_version);
int probe_sm90(int* ptx_version, int* binary_version);

/// Writes the dropout keep mask (flatattn::dropout_mask, validated) with the family's kernel on the current
/// device, asynchronously on `stream` (a cudaStream_t). Returns the launch's cudaError_t value.
int dropout_mask_sm80(std::uint8_t* mask, std::int64_t batch, std::int64_t hq, std::int64_t nq, std::int64_t nk,
                      const DropoutStream& s, void* stream);
int dropout_mask_sm86(std::uint8_t* mask, std::int64_t batch, std::int64_t hq, std::int64_t nq, std::int64_t nk,
                      const DropoutStream& s, void* stream);
int dropout_mask_sm75(std::uint8_t* mask, std::int64_t batch, std::int64_t hq, std::int64_t nq, std::int64_t nk,
                      const DropoutStream& s, void* stream);
int dropout_mask_sm90(std::uint8_t* mask, std::int64_t batch, std::int64_t hq, std::int64_t nq, std::int64_t nk,
                      const DropoutStream& s, void* stream);

}  // namespace flatattn::cuda
