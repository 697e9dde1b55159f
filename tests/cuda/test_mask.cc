// Host checks (no GPU needed, plain C++) of the device mask logic: BandMask equals the shared rule of
// src/core/mask.h, and BlockRange skips only key blocks with no visible key and leaves unmasked only
// blocks fully visible to every row of the tile. Also the tile policy's budgets.
#include <gtest/gtest.h>

#include <random>

#include "src/core/mask.h"
#include "src/cuda/common/mask.cuh"
#include "src/cuda/policy/heuristics.h"
#include "src/cuda/runtime.h"
#include "src/check/case.h"

using namespace flatattn;
using namespace flatattn::cuda;

namespace {

struct MaskSetup {
  MaskSpec spec;
  FwdParams p;
  int nq, nk;
};

MaskSetup random_setup(std::mt19937_64& rng) {
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  MaskSetup s;
  s.nq = uni(0, 300);
  s.nk = uni(0, 300);
  s.spec.bottom_right = uni(0, 1) == 1;
  const int kind = uni(0, 3);
  s.spec.left = kind >= 2 ? uni(0, 80) : -1;
  s.spec.right = kind == 1 ? 0 : (kind == 3 ? uni(0, 80) : -1);
  s.p.bottom_right = s.spec.bottom_right;
  s.p.left = static_cast<int>(s.spec.left);
  s.p.right = static_cast<int>(s.spec.right);
  return s;
}

template <int BlockN>
void check_ranges(const MaskSetup& s, const BandMask& bm, int block_m) {
  for (int r0 = 0; r0 < s.nq; r0 += block_m) {
    const int r1 = std::min(r0 + block_m, s.nq) - 1;
    const BlockRange<BlockN> range(bm, r0, r1);
    const int n_blocks = (s.nk + BlockN - 1) / BlockN;
    for (int b = 0; b < n_blocks; ++b) {
      bool any = false, all = true;
      for (int i = r0; i <= r1; ++i)
        for (int j = b * BlockN; j < (b + 1) * BlockN; ++j) {
          const bool vis = j < s.nk && s.spec.visible(i, j, s.nq, s.nk);
          any = any || vis;
          all = all && vis;
        }
      const bool visited = b >= range.begin && b < range.end;
      if (any) ASSERT_TRUE(visited) << "block " << b << " holds a visible key but is skipped (rows " << r0 << ".." << r1 << ")";
      if (visited && !range.needs_mask(b)) ASSERT_TRUE(all) << "block " << b << " is left unmasked but is not fully visible";
    }
    ASSERT_LE(range.end, n_blocks + (range.begin == range.end ? 1 : 0));
  }
}

}  // namespace

TEST(CudaMask, BandMaskEqualsSharedRule) {
  const std::uint64_t seed = flatattn::check::fresh_seed();
  std::mt19937_64 rng(seed);
  for (int it = 0; it < 300; ++it) {
    const MaskSetup s = random_setup(rng);
    const BandMask bm(s.p, s.nq, s.nk);
    for (int i = 0; i < s.nq; ++i)
      for (int j = 0; j < s.nk; ++j)
        ASSERT_EQ(j >= bm.lo(i) && j <= bm.hi(i), s.spec.visible(i, j, s.nq, s.nk))
            << "seed " << seed << " row " << i << " key " << j;
  }
}

TEST(CudaMask, BlockRangeSkipsOnlyEmptyBlocks) {
  const std::uint64_t seed = flatattn::check::fresh_seed();
  std::mt19937_64 rng(seed);
  for (int it = 0; it < 200; ++it) {
    const MaskSetup s = random_setup(rng);
    const BandMask bm(s.p, s.nq, s.nk);
    SCOPED_TRACE("seed " + std::to_string(seed) + " it " + std::to_string(it));
    check_ranges<64>(s, bm, 128);
    check_ranges<128>(s, bm, 64);
    check_ranges<32>(s, bm, 16);
  }
}

// The policy's capacity rule, shared-memory budgets per family and the automatic choice (host only).
TEST(CudaPolicy, FlatCapacityAndChoice) {
  const DeviceInfo h100{0, 90, 132, 232448, "NVIDIA H100 80GB HBM3"};
  for (Family f : {Family::sm75, Family::sm80, Family::sm86}) {
    for (int d : kHeadDims) {
      const FlatTileSize t = flat_tile(f, d);
      ASSERT_GT(t.cap_n(), 0);
      EXPECT_TRUE(flat_fits(f, d, t.cap_n()));
      EXPECT_FALSE(flat_fits(f, d, t.cap_n() + 1));
      Workload w;
      w.d = d;
      w.nq = w.nk = t.cap_n() + 1;
      EXPECT_EQ(choose_dataflow(h100, f, w), Dataflow::flash) << "a row FLAT cannot hold must go to Flash";
      w.nq = w.nk = t.cap_n();  // FLAT fits: the planner decides (data files from the source tree)
      const Dataflow pick = choose_dataflow(h100, f, w);
      EXPECT_TRUE(pick == Dataflow::flash || pick == Dataflow::flat);
      const FlashTileSize ft = flash_tile(f, d);
      const int limit = smem_optin_bytes(f);
      EXPECT_LE(ft.smem_bytes(d), limit) << name(f) << " D=" << d;
      EXPECT_LE(t.smem_bytes(d), limit) << name(f) << " D=" << d;
    }
  }
}
