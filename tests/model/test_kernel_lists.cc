// The planner's shipped kernel lists (data/model/kernels/*.json) mirror the CUDA tile table
// (src/cuda/policy/tile_size.h, plain constexpr C++): this test keeps them from drifting apart.
#include <gtest/gtest.h>

#include <string>

#include "src/cuda/policy/tile_size.h"
#include "src/model/planner.h"

using namespace flatattn;

namespace {
void expect_list_matches(const char* preset, cuda::Family f) {
  const std::vector<model::KernelVariant> list = model::load_kernel_variants(preset);
  for (int d : cuda::kHeadDims) {
    int seen_flash = 0, seen_flat = 0;
    for (const model::KernelVariant& v : list) {
      if (v.head_dim != d) continue;
      if (v.dataflow == Dataflow::flash) {
        const cuda::FlashTileSize t = cuda::flash_tile(f, d);
        EXPECT_EQ(v.block_m, t.block_m) << preset << " flash D=" << d;
        EXPECT_EQ(v.block_n, t.block_n) << preset << " flash D=" << d;
        EXPECT_EQ(v.warps, t.warps) << preset << " flash D=" << d;
        EXPECT_EQ(v.stages, t.stages) << preset << " flash D=" << d;
        ++seen_flash;
      } else {
        const cuda::FlatTileSize t = cuda::flat_tile(f, d);
        EXPECT_EQ(v.block_m, t.block_m()) << preset << " flat D=" << d;
        EXPECT_EQ(v.block_n, t.block_n) << preset << " flat D=" << d;
        EXPECT_EQ(v.warps, t.warps) << preset << " flat D=" << d;
        EXPECT_EQ(v.cap_n, t.cap_n()) << preset << " flat D=" << d;
        ++seen_flat;
      }
    }
    EXPECT_EQ(seen_flash, 1) << preset << " D=" << d;
    EXPECT_EQ(seen_flat, 1) << preset << " D=" << d;
  }
}
}  // namespace

TEST(KernelLists, MirrorTheCudaTileTable) {
  expect_list_matches("default", cuda::Family::sm80);
  expect_list_matches("sm86", cuda::Family::sm86);
  expect_list_matches("sm75", cuda::Family::sm75);
}
