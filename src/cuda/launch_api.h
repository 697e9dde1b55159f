// The host-side contract between dispatch (plain C++) and the kernel instances (nvcc): one function
// template, explicitly instantiated once per generated file in src/cuda/inst/, and the launch
// arguments it takes. No CUDA types here.
#pragma once

#include <cstdint>

#include "flatattn/attention.h"
#include "src/core/problem.h"
#include "src/cuda/policy/tile_size.h"

namespace flatattn::cuda {

struct LaunchArgs {
  const Problem* problem = nullptr;
  const FwdTensors* tensors = nullptr;
  void* stream = nullptr;  ///< cudaStream_t
  int device = 0;
};

/// What a launcher reports about itself (for Report and error messages).
struct LaunchInfo {
  int block_m = 0, block_n = 0;
};

/// Workspace of one backward call (stream-ordered allocation by dispatch): see BwdParams.
struct BwdWorkspace {
  float* dq_accum = nullptr;   ///< (Hq, B, Nq, kernel D) fp32, zeroed by the pre-pass
  float* dsum = nullptr;       ///< (Hq, B, Nq) fp32
  int* sem = nullptr;          ///< deterministic: (B, Hq, ceil(Nq / BlockM)), zeroed by dispatch
  unsigned* ticket = nullptr;  ///< deterministic: zeroed by dispatch
};

struct BwdLaunchArgs {
  const Problem* problem = nullptr;
  const BwdTensors* tensors = nullptr;
  BwdWorkspace ws;
  void* stream = nullptr;  ///< cudaStream_t
  int device = 0;
};

/// Launches one instance: family F, dataflow DF, storage dtype DT, kernel head dim D, softcap variant.
/// Defined in src/cuda/launch.cuh; one explicit instantiation per file of src/cuda/inst/.
template <Family F, Dataflow DF, DType DT, int D, bool Softcap>
LaunchInfo launch_fwd(const LaunchArgs& args);

/// Launches one backward instance (pre-pass, main kernel, dQ conversion) on args.stream. Defined in
/// src/cuda/launch_bwd.cuh; one explicit instantiation per bwd_* file of src/cuda/inst/.
template <Family F, DType DT, int D, bool Softcap>
LaunchInfo launch_bwd(const BwdLaunchArgs& args);

/// Probes whether a family's code can run on the current device (its object files carry a tiny kernel
/// built with the same targets). Returns a cudaError_t value (0 = loadable) and the kernel's PTX and
/// binary versions (cudaFuncAttributes::ptxVersion / binaryVersion).
int probe_sm80(int* ptx_version, int* binary_version);
int probe_sm86(int* ptx_version, int* binary_version);
int probe_sm75(int* ptx_version, int* binary_version);
int probe_sm90(int* ptx_version, int* binary_version);

}  // namespace flatattn::cuda
