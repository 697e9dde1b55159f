// A case whose outputs show the dropout keep mask itself, for tests that compare a backend's mask with
// flatattn::dropout_mask() bit for bit: q = k = 0 makes S = 0 and P = 1 / N exactly, v = dout = identity
// (Nq = Nk = D = N), so O[b, i, h, j] = dV[b, j, h, i] = Z_ij / ((1 - p) N).
#pragma once

#include <cstdint>
#include <vector>

#include "src/check/case.h"

namespace flatattn::check {

/// The probe case: (B, N, H, N) tensors of `dtype`, Hq = Hkv = heads, options o (its dropout_p, seed, offset).
CaseTensors dropout_probe_case(DType dtype, std::int64_t batch, std::int64_t heads, std::int64_t n, const Options& o);

/// The mask read back from a probe output x (B, N, H, N): element (b, row, h, col) goes to mask index
/// (b, h, i, j), with (i, j) = (row, col) for O and (col, row) for dV (transposed). 1 where the value is the
/// kept one, 1 / ((1 - p) N), within rel_tol of it; 0 where it is 0; 3 for anything else (a failure).
std::vector<std::uint8_t> read_dropout_mask(const HostTensor& x, std::int64_t batch, std::int64_t heads,
                                            std::int64_t n, float p, bool transposed, double rel_tol);

}  // namespace flatattn::check
