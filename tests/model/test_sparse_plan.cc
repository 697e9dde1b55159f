// The planner on sparse calls (issue 16, src/model/sparse_blocks.h): block-sparse time and FLOPs count only the
// visited key blocks; local + global counts the same blocks as the library's own derived lists and the same
// visible pairs as the library's element rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "flatattn/error.h"
#include "src/core/sparse.h"
#include "src/core/sparse_lists.h"
#include "src/model/planner.h"
#include "src/model/sparse_blocks.h"

using namespace flatattn;
using namespace flatattn::model;

namespace {

AttnShape shape(std::int64_t n, bool causal, std::int64_t wl = -1, std::int64_t wr = -1) {
  AttnShape s;
  s.batch = 2;
  s.nq = s.nk = n;
  s.hq = s.hkv = 16;
  s.d = 128;
  s.causal = causal;
  s.window_left = wl;
  s.window_right = wr;
  return s;
}

/// The library's SparseSpec for local + global over `g` (which must outlive it), as validation builds it.
SparseSpec local_global_spec(const AttnShape& s, const std::vector<std::int32_t>& g, int block) {
  SparseSpec sp;
  sp.on = true;
  sp.block_q = sp.block_kv = block;
  sp.nqb = (s.nq + block - 1) / block;
  sp.nkb = (s.nk + block - 1) / block;
  sp.rule = SparseRule::local_global;
  sp.globals.data = g.data();
  sp.globals.stride[3] = 1;
  sp.globals.width = static_cast<std::int64_t>(g.size());
  sp.causal = s.causal;
  return sp;
}

std::vector<std::int32_t> random_globals(std::mt19937_64& rng, std::int64_t n, int count) {
  std::vector<std::int32_t> g;
  std::uniform_int_distribution<std::int32_t> pos(0, static_cast<std::int32_t>(n - 1));
  while (static_cast<int>(g.size()) < count) {
    g.push_back(pos(rng));
    std::sort(g.begin(), g.end());
    g.erase(std::unique(g.begin(), g.end()), g.end());
  }
  return g;
}

}  // namespace

// Density 0.1 of a non-causal 16k call: FLOPs are exactly a tenth of the dense count (4 B Hq D N^2 / 10: the
// visible pairs of the visited blocks), the chosen variant's time well below the dense plan's, and no FLAT
// variant is a candidate (sparse calls run on the Flash kernels).
TEST(PlannerSparse, DensityCountsOnlyVisitedBlocks) {
  const Gpu gpu = load_hardware("h100").gpu;
  const std::vector<KernelVariant> vs = load_kernel_variants("default");
  const AttnShape dense = shape(16384, false);
  AttnShape sparse = dense;
  sparse.density = 0.1;
  const Plan pd = plan(gpu, dense, vs), ps = plan(gpu, sparse, vs);
  const double n = 16384;
  EXPECT_DOUBLE_EQ(pd.chosen.flops, 4.0 * 2 * 16 * 128 * n * n);
  EXPECT_DOUBLE_EQ(ps.chosen.flops, 4.0 * 2 * 16 * 128 * n * n * 0.1);
  EXPECT_LT(ps.chosen.time_s, 0.25 * pd.chosen.time_s) << ps.chosen.time_s << " vs dense " << pd.chosen.time_s;
  EXPECT_GT(ps.chosen.time_s, 0.05 * pd.chosen.time_s) << "K/V traffic and Q/O stay: not below a twentieth";
  EXPECT_EQ(ps.chosen.variant.dataflow, Dataflow::flash);
  for (const KernelPrediction& k : ps.candidates)
    if (k.variant.dataflow == Dataflow::flat) {
      EXPECT_FALSE(k.feasible) << k.variant.name;
      EXPECT_NE(k.reason.find("Flash kernels only"), std::string::npos) << k.reason;
    }
  // More visited blocks take longer; density 1 costs what the dense call does on the Flash kernels.
  AttnShape half = dense;
  half.density = 0.5;
  const Plan ph = plan(gpu, half, vs);
  EXPECT_LT(ps.chosen.time_s, ph.chosen.time_s);
  EXPECT_LT(ph.chosen.time_s, pd.chosen.time_s);
  AttnShape one = dense;
  one.density = 1.0;
  const Plan p1 = plan(gpu, one, vs, Dataflow::flash), pdf = plan(gpu, dense, vs, Dataflow::flash);
  EXPECT_DOUBLE_EQ(p1.chosen.time_s, pdf.chosen.time_s);
  EXPECT_DOUBLE_EQ(p1.chosen.flops, pdf.chosen.flops);
}

// With a causal band the density scales the band's blocks and pairs: FLOPs are P times the causal count.
TEST(PlannerSparse, DensityScalesTheBand) {
  AttnShape s = shape(4096, true);
  const double causal_flops = s.flops();
  s.density = 0.25;
  EXPECT_DOUBLE_EQ(s.flops(), 0.25 * causal_flops);
  const KeyBlocks k = key_blocks(s, 1024, 1151, 64);  // rows 1024..1151 see keys 0..1151: 18 blocks of 64
  EXPECT_DOUBLE_EQ(k.visited, 0.25 * 18);
}

// Longformer, window (0, 0), globals at 0 and 512 of N = 1024, non-causal: 1024 + 2 (2 x 1024) - 4 - 2 = 5114
// visible pairs per (sequence, head) (the diagonal, two rows and two columns, their overlaps counted once).
TEST(PlannerSparse, LocalGlobalPairsByHand) {
  AttnShape s = shape(1024, false, 0, 0);
  s.globals = {0, 512};
  EXPECT_DOUBLE_EQ(visible_pairs(s), 5114);
  EXPECT_DOUBLE_EQ(s.flops(), 4.0 * 2 * 16 * 128 * 5114);
  // 128 x 128 blocks: the diagonal (8), block rows 0 and 4 (16) and block columns 0 and 4 (16), overlaps once: 34.
  double visited = 0;
  for (std::int64_t r = 0; r < 8; ++r) visited += key_blocks(s, r * 128, r * 128 + 127, 128).visited;
  EXPECT_DOUBLE_EQ(visited, 34);
}

// Random shapes: the visible pairs equal the library's element rule (local_global_visible) summed over every
// pair, and at 128 x 128 tiles the visited blocks equal the blocks of the library's derived lists
// (local_global_lists), causal and not, with windows.
TEST(PlannerSparse, LocalGlobalMatchesTheLibraryRuleAndLists) {
  std::mt19937_64 rng(16);
  struct Band {
    bool causal;
    std::int64_t wl, wr;
  };
  for (const Band band : {Band{false, 64, 64}, Band{true, 100, -1}, Band{true, -1, -1}, Band{false, 0, 300}})
    for (std::int64_t n : {200, 777, 1030}) {
      AttnShape s = shape(n, band.causal, band.wl, band.wr);
      s.globals = random_globals(rng, n, 1 + static_cast<int>(rng() % 5));
      const SparseSpec sp = local_global_spec(s, s.globals, 128);
      const MaskSpec m = s.mask();
      double pairs = 0;
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < n; ++j) pairs += local_global_visible(sp, m, 0, i, j, n, n);
      EXPECT_DOUBLE_EQ(visible_pairs(s), pairs) << "n " << n << " causal " << band.causal;
      const HostLists l = local_global_lists(sp, m, {SeqLengths{n, n}});
      double listed = 0, modeled = 0;
      for (std::int64_t r = 0; r < l.rows; ++r) {
        listed += l.num[r] + l.full_num[r];
        modeled += key_blocks(s, r * 128, std::min(n, (r + 1) * 128) - 1, 128).visited;
      }
      EXPECT_DOUBLE_EQ(modeled, listed) << "n " << n << " causal " << band.causal << " wl " << band.wl;
    }
}

TEST(PlannerSparse, LocalGlobalIsCheaperThanDenseAndDearerThanTheWindow) {
  const Gpu gpu = load_hardware("h100").gpu;
  const std::vector<KernelVariant> vs = load_kernel_variants("default");
  const AttnShape window = shape(16384, false, 256, 256);
  AttnShape lg = window;
  for (std::int32_t g = 0; g < 16; ++g) lg.globals.push_back(g * 1024);
  const Plan pw = plan(gpu, window, vs, Dataflow::flash), pl = plan(gpu, lg, vs), pd = plan(gpu, shape(16384, false), vs);
  EXPECT_GT(pl.chosen.flops, pw.chosen.flops);
  EXPECT_GT(pl.chosen.time_s, pw.chosen.time_s);
  EXPECT_LT(pl.chosen.time_s, 0.25 * pd.chosen.time_s);
}

TEST(PlannerSparse, BadSparseFieldsNameTheField) {
  const Gpu gpu = load_hardware("h100").gpu;
  const std::vector<KernelVariant> vs = load_kernel_variants("default");
  auto field_of = [&](const AttnShape& s) {
    try {
      (void)plan(gpu, s, vs);
    } catch (const Error& e) {
      return e.argument();
    }
    return std::string("(no error)");
  };
  AttnShape s = shape(1024, false);
  s.density = 1.5;
  EXPECT_EQ(field_of(s), "density");
  s.density = -0.1;
  EXPECT_EQ(field_of(s), "density");
  s = shape(1024, false);
  s.globals = {5, 3};
  EXPECT_EQ(field_of(s), "globals");
  s.globals = {1024};
  EXPECT_EQ(field_of(s), "globals");
  s.globals = {3};
  s.density = 0.5;
  EXPECT_EQ(field_of(s), "density");  // BigBird is not modeled
}
