// The decode step's cost model (src/model/decode.h, decode_compare.h): its monotonic properties, its agreement
// with the kernel's shared memory and the runtime rule's inputs, and its errors and split picks on the H100
// bench_decode files in bench/results (read from the repository: the numbers below are tolerances only).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "flatattn/error.h"
#include "src/cuda/decode/decode_tile.h"
#include "src/cuda/policy/decode_plan.h"
#include "src/model/decode.h"
#include "src/model/decode_compare.h"
#include "src/model/hardware.h"

using namespace flatattn;
using namespace flatattn::model;

namespace {

Gpu h100() { return load_hardware("h100").gpu; }

std::filesystem::path results(const char* name) {
  return std::filesystem::path(FLATATTN_SOURCE_DIR) / "bench" / "results" / name;
}

// The fit set (B = 1, forced split counts 8..128 and the planner's) and the held-out files (stop 33's default shapes
// on the same lease; an older commit's and the PDL A/B's).
constexpr const char* kFitFile = "stop33-decode-splits-h100-a74672a.json";
const std::vector<const char*> kHeldOut = {"stop33-decode-h100-a74672a.json", "decode-h100-498d7dd.json",
                                           "decode-pdl0-r1-h100-5df6c54.json", "decode-pdl1-r1-h100-5df6c54.json"};

DecodeShape shape(std::int64_t b, std::int64_t ctx, std::int64_t hq, std::int64_t hkv, std::int64_t page) {
  DecodeShape s;
  s.batch = b;
  s.context = ctx;
  s.hq = hq;
  s.hkv = hkv;
  s.page = page;
  return s;
}

}  // namespace

TEST(DecodeModel, SharedMemoryIsTheKernels) {
  EXPECT_EQ(decode_smem_bytes(64), cuda::DecodeTile<64>::kSmem);
  EXPECT_EQ(decode_smem_bytes(128), cuda::DecodeTile<128>::kSmem);
  EXPECT_EQ(decode_smem_bytes(256), cuda::DecodeTile<256>::kSmem);
  // The runtime's count on the H100 at D = 128 (forward_kvcache.cc: opt-in smem / kSmem, clamped to 1..3).
  const Gpu g = h100();
  EXPECT_EQ(decode_resident_ctas_per_sm(128, g), std::clamp(g.smem_per_cta / cuda::DecodeTile<128>::kSmem, 1, 3));
}

TEST(DecodeModel, MoreBytesTakeMoreTime) {
  const Gpu g = h100();
  for (int splits : {1, 8, 32}) {
    double prev = 0;
    for (std::int64_t ctx : {1024, 4096, 16384, 65536, 262144}) {  // the same CTAs, each walking more tiles
      const double t = predict_decode(shape(1, ctx, 32, 8, 16), splits, g).step_us;
      EXPECT_GT(t, prev) << "ctx " << ctx << " splits " << splits;
      prev = t;
    }
    // More sequences: never faster; strictly slower once the wave is bandwidth bound or a wave is added (within one
    // latency-bound wave more CTAs run side by side at the same time, as measured: B 1 and 8 at 32/8, one split,
    // 0.254 and 0.257 ms in stop33-decode-h100-a74672a.json).
    prev = 0;
    for (std::int64_t b : {1, 2, 8, 32, 128}) {
      const DecodePrediction p = predict_decode(shape(b, 8192, 32, 8, 256), splits, g);
      if (p.bandwidth_bound() || p.waves > 1) EXPECT_GT(p.step_us, prev) << "B " << b << " splits " << splits;
      else EXPECT_GE(p.step_us, prev) << "B " << b << " splits " << splits;
      prev = p.step_us;
    }
  }
  // Per-row page lookups cost more than one per tile at the same bytes.
  EXPECT_GT(predict_decode(shape(1, 32768, 32, 8, 16), 8, g).step_us,
            predict_decode(shape(1, 32768, 32, 8, 256), 8, g).step_us);
  EXPECT_EQ(predict_decode(shape(1, 32768, 32, 8, 0), 8, g).step_us,
            predict_decode(shape(1, 32768, 32, 8, 256), 8, g).step_us);
}

TEST(DecodeModel, TwoWavesCostMoreThanOne) {
  const Gpu g = h100();
  const DecodePrediction one = predict_decode(shape(1, 8192, 32, 8, 16), 32, g);  // 256 CTAs of 264 slots
  const DecodePrediction two = predict_decode(shape(1, 8192, 32, 8, 16), 64, g);  // 512 CTAs
  ASSERT_EQ(one.waves, 1);
  ASSERT_EQ(two.waves, 2);
  EXPECT_GT(two.kernel_us, one.kernel_us);
  // One sequence more than a wave of single-head MHA CTAs: 1/slots more bytes, but a second wave.
  DecodeShape s = shape(one.slots, 8192, 1, 1, 16);
  const DecodePrediction full = predict_decode(s, 1, g);
  s.batch = one.slots + 1;
  const DecodePrediction over = predict_decode(s, 1, g);
  EXPECT_EQ(full.waves, 1);
  EXPECT_EQ(over.waves, 2);
  EXPECT_GT(over.step_us, 1.2 * full.step_us);
}

TEST(DecodeModel, SplitsBeyondTheTilesAreNotLaunched) {
  const Gpu g = h100();
  const DecodePrediction p = predict_decode(shape(1, 256, 32, 8, 16), 128, g);  // 4 tiles
  EXPECT_EQ(p.splits, 4);
  EXPECT_EQ(p.tiles_per_split, 1);
}

TEST(DecodeModel, RefusesBadInput) {
  const Gpu g = h100();
  EXPECT_THROW(predict_decode(shape(1, 8192, 32, 5, 16), 1, g), Error);  // Hkv does not divide Hq
  EXPECT_THROW(predict_decode(shape(0, 8192, 32, 8, 16), 1, g), Error);
  EXPECT_THROW(predict_decode(shape(1, 0, 32, 8, 16), 1, g), Error);
  EXPECT_THROW(predict_decode(shape(1, 8192, 32, 8, -1), 1, g), Error);
  EXPECT_THROW(predict_decode(shape(1, 8192, 32, 8, 16), 0, g), Error);
  DecodeShape s = shape(1, 8192, 32, 8, 16);
  s.d = 96;
  EXPECT_THROW(predict_decode(s, 1, g), Error);
  s.d = 128;
  s.dtype = DType::f32;
  EXPECT_THROW(predict_decode(s, 1, g), Error);
  Gpu none = g;
  none.decode.reset();
  try {
    predict_decode(shape(1, 8192, 32, 8, 16), 1, none);
    FAIL() << "no throw without a decode calibration";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decode"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_decode_measured(results("no-such-file.json")), Error);
  // A forward bench file has no bench_decode rows.
  EXPECT_THROW(load_decode_measured(results("gpu-fwd-h100.json")), Error);
}

// The recorded planner_splits are the runtime rule's count for the recorded shapes on this H100 description: the
// rule the CLI prints next to the model's pick is the one that ran. The rule plans for the cache capacity, which
// bench_decode allocates as ceil(ctx / page) + 1 pages per sequence (one spare; a contiguous cache: ctx rows).
TEST(DecodeModel, RuleInputsMatchTheRecordedPlannerCounts) {
  const Gpu g = h100();
  int checked = 0;
  for (const char* f : {kFitFile, "stop33-decode-h100-a74672a.json"})
    for (const DecodeMeasured& m : load_decode_measured(results(f))) {
      cuda::DecodeWork w;
      w.batch = m.shape.batch;
      w.hkv = m.shape.hkv;
      w.row_blocks = m.shape.row_blocks();
      w.keys = m.shape.page > 0 ? ((m.shape.context + m.shape.page - 1) / m.shape.page + 1) * m.shape.page
                                 : m.shape.context;
      w.sm_count = g.sms;
      w.ctas_per_sm = decode_resident_ctas_per_sm(m.shape.d, g);
      EXPECT_EQ(cuda::plan_decode_splits(w), m.rule_splits) << f << " B " << m.shape.batch << " ctx " << m.shape.context;
      ++checked;
    }
  EXPECT_GT(checked, 100);
}

// The shipped H100 constants against the fit file and the held-out files: median |error| and the picks.
TEST(DecodeModel, H100ErrorsAndPicks) {
  const Gpu g = h100();
  const DecodeComparison fit = compare_decode(g, load_decode_measured(results(kFitFile)));
  EXPECT_LE(fit.median_rel_error, 0.05);
  EXPECT_GE(fit.spearman, 0.95);
  ASSERT_GE(fit.picks.size(), 10u);
  EXPECT_EQ(fit.model_ok, int(fit.picks.size()));  // within 2 % of the fastest measured count on every shape
  EXPECT_GE(fit.model_ok, fit.rule_ok);
  for (const char* f : kHeldOut) {
    const DecodeComparison c = compare_decode(g, load_decode_measured(results(f)));
    EXPECT_LE(c.median_rel_error, 0.08) << f;
    EXPECT_GE(c.spearman, 0.95) << f;
    EXPECT_EQ(c.model_ok, int(c.picks.size())) << f;
    EXPECT_GE(c.model_ok, c.rule_ok) << f;
  }
}

// Refitting on the fit file from the shipped constants does not get worse, and the shipped constants are what such a
// fit gives (within 1 % mean log error): the data file is reproducible from the repository.
TEST(DecodeModel, FitReproducesTheShippedConstants) {
  Gpu g = h100();
  const std::vector<DecodeMeasured> rows = load_decode_measured(results(kFitFile));
  auto mean_log = [&](const Gpu& gpu) {
    double s = 0;
    for (const DecodeMeasured& m : rows) s += std::abs(std::log(predict_decode(m.shape, m.splits, gpu).step_us * 1e-3 / m.ms));
    return s / double(rows.size());
  };
  const double shipped = mean_log(g);
  Gpu fitted = g;
  fitted.decode = fit_decode(g, rows);
  EXPECT_LE(mean_log(fitted), shipped + 1e-9);
  EXPECT_LE(shipped, mean_log(fitted) + 0.01);
  // From the physical guess (no decode constants) the fit gets there too.
  Gpu bare = g;
  bare.decode.reset();
  Gpu from_guess = g;
  from_guess.decode = fit_decode(bare, rows);
  EXPECT_LE(mean_log(from_guess), shipped + 0.01);
}
