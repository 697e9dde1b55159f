// The four dataflows on a GPU, for `flatattn model --hw h100` sweeps:
//   naive: S = Q K^T (cuBLAS-class GEMM, S written), softmax kernel (read S, write P), O = P V;
//          each kernel max(FLOPs / (tensor rate x gemm_efficiency), bytes / (HBM x stream_efficiency)).
//   flex:  the same with the softmax in the first GEMM's epilogue when a 64-row tile of whole fp32
//          logit rows fits a CTA's shared memory (one round trip of P instead of two of S and P).
//   flash, flat: our fused kernels, the best variant of that dataflow (planner.h).
#pragma once

#include <span>
#include <string>

#include "src/model/dataflow.h"
#include "src/model/gpu_kernel.h"
#include "src/model/workload.h"

namespace flatattn::model {

/// Cost of `dataflow` for the attention of workload `w` at Nq = Nk = n on `gpu`; `mapping` receives a
/// one-line description (kernel names). compute_s / memory_s are the summed bounds, ideal_s is the FLOPs
/// at the tensor rate, energy_j is 0 (no GPU energy model). Infeasible when no variant fits.
Cost gpu_dataflow_cost(const Gpu& gpu, const Workload& w, std::int64_t n, DataflowKind dataflow,
                       std::span<const KernelVariant> variants, std::string& mapping);

}  // namespace flatattn::model
