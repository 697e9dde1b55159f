// ldmatrix: four 8x8 tiles of 16-bit values from shared memory into mma fragments (sm_75+).
// Lanes 8i..8i+7 give the row addresses of tile i; register i of lane l receives tile i's
// (row l/4, cols 2(l%4)..+1), or with .trans its (col l/4, rows 2(l%4)..+1) -- the B operand of a
// row-major [k][n] tile.
#pragma once

#include <cstdint>

#include "src/cuda/common/arch.cuh"

namespace flatattn::cuda {

FLATATTN_DEVICE void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t smem_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
}

FLATATTN_DEVICE void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t smem_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
}

}  // namespace flatattn::cuda
