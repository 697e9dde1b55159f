// Host checks of a block-sparse CUDA call (issue 16): the lists' block sizes against the chosen kernel's
// tile. A CTA must lie in one query block and each listed key block must be whole kernel key blocks.
#pragma once

#include <string>

#include "flatattn/error.h"
#include "src/core/sparse.h"

namespace flatattn::cuda {

/// Throws Error(unsupported) naming block_sparse.block_q / block_kv unless they are multiples of the
/// kernel's (block_m, block_n) tile: the lists are valid (the CPU engine takes any block size), the CUDA
/// kernels cannot serve them.
inline void check_sparse_tile(const SparseSpec& s, int block_m, int block_n) {
  const std::string tile = std::to_string(block_m) + " x " + std::to_string(block_n);
  if (s.block_q % block_m != 0)
    throw Error(Error::Kind::unsupported, "block_sparse.block_q", std::to_string(s.block_q),
                "must be a multiple of the kernel tile's " + std::to_string(block_m) + " query rows (tile " + tile + ")",
                "use block sizes that are multiples of the tile; without FLATATTN_CUDA_SM90_WS forcing a kernel, any "
                "multiple of 128 x 128 runs (the planner picks a kernel whose tile divides it)");
  if (s.block_kv % block_n != 0)
    throw Error(Error::Kind::unsupported, "block_sparse.block_kv", std::to_string(s.block_kv),
                "must be a multiple of the kernel tile's " + std::to_string(block_n) + " keys (tile " + tile + ")",
                "use block sizes that are multiples of the tile; without FLATATTN_CUDA_SM90_WS forcing a kernel, any "
                "multiple of 128 x 128 runs (the planner picks a kernel whose tile divides it)");
}

}  // namespace flatattn::cuda
