// Host-side checks of the warp-specialized forward's tensor maps (src/cuda/tma_map.h make_tile_map), built in
// the sm_90a test object (tests/cuda/tma_checks.cu), called by tests/cuda/test_sm90_ws.cc.
#pragma once

#include <cstdint>
#include <string>

namespace flatattn::testing {

/// make_tile_map on a (cols, rows, heads, batch) operand at `base` with element strides (s_row, s_head, s_batch)
/// and a box of box_rows rows; returns the Error's what(), or "" when the map was built.
std::string tile_map_error(const void* base, std::int64_t cols, std::int64_t rows, std::int64_t heads,
                           std::int64_t batch, std::int64_t s_row, std::int64_t s_head, std::int64_t s_batch,
                           int box_rows);

}  // namespace flatattn::testing
