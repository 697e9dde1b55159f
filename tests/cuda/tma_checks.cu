// See tma_checks.h.
#include "tests/cuda/tma_checks.h"

#include "flatattn/error.h"
#include "src/cuda/tma_map.h"

namespace flatattn::testing {

std::string tile_map_error(const void* base, std::int64_t cols, std::int64_t rows, std::int64_t heads,
                           std::int64_t batch, std::int64_t s_row, std::int64_t s_head, std::int64_t s_batch,
                           int box_rows) {
  cuda::TileMapShape s;
  s.base = base;
  s.cols = cols, s.rows = rows, s.heads = heads, s.batch = batch;
  s.s_row = s_row, s.s_head = s_head, s.s_batch = s_batch;
  s.box_rows = box_rows;
  s.what = "k";
  try {
    cuda::make_tile_map(s, true);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace flatattn::testing
