// One row of elements cut into bf16 pieces (SplitPolicy, src/cpu/amx/amx.h): the split packers' inner step.
#pragma once

#include <cstdint>

#include "flatattn/dtype.h"

namespace flatattn::cpu {

/// out[p * ld + e] = piece p of element at + e of base (dtype dt: f32, f16 or bf16) for e < d, p < pieces, by the
/// rule of amx.h (bf16_piece), bit for bit. AVX-512 (src/cpu/amx/split_avx512.cc): call only on a bf16 path.
void split_row_avx512(const void* base, DType dt, std::int64_t at, std::int64_t d, int pieces, std::int64_t ld,
                      std::uint16_t* out);

}  // namespace flatattn::cpu
