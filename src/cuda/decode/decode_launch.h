// The host-side contract between forward_kvcache.cc (plain C++) and the decode instances (nvcc): launchers
// explicitly instantiated once per generated file (src/cuda/CMakeLists.txt, decode instances). No CUDA
// types here.
#pragma once

#include "flatattn/attention.h"
#include "src/core/variant.h"
#include "src/cuda/decode/decode_params.h"

namespace flatattn::cuda {

/// The decode kernel over grid (row_blocks, num_splits, B * Hkv) on `stream` (a cudaStream_t), then the
/// combine kernel when num_splits > 1. Throws Error when the device cannot run it.
template <DType Dt, int D, VariantId Vid>
void launch_decode(const DecodeParams& p, int device, void* stream);

/// Cluster-FLAT decoding (sm_90 only): the decode kernel over grid (row_blocks, num_splits, B * Hkv) with
/// clusters of (1, num_splits, 1), num_splits in [2, 8]; no combine kernel, no partials.
template <DType Dt, int D>
void launch_decode_cluster(const DecodeParams& p, int device, void* stream);

}  // namespace flatattn::cuda
