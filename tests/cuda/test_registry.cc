// The instance registry (src/cuda/registry.h) on the host, no GPU needed: its index answers as a plain
// scan of the generated table would, and its stored names are the instance names the Report used to
// build per call (so reports and tools that parse them see no change).
#include <gtest/gtest.h>

#include <string>

#include "src/cuda/registry.h"

using namespace flatattn;
using namespace flatattn::cuda;

namespace {

/// The smallest built head dim >= d among `list` entries matching `same`, by a plain scan (-1: none).
template <class List, class Same>
int scan(const List& list, Same same, int d) {
  int best = -1;
  for (const auto& in : list)
    if (same(in) && in.d >= d && (best < 0 || in.d < best)) best = in.d;
  return best;
}

std::string suffix(VariantId v) { return v == VariantId::plain ? "" : std::string("_") + variant_name(v); }

}  // namespace

TEST(CudaRegistry, IndexAnswersAsAScan) {
  for (const FwdInstance& key : fwd_instances()) {
    auto same = [&](const FwdInstance& in) {
      return in.family == key.family && in.dataflow == key.dataflow && in.dtype == key.dtype && in.variant == key.variant;
    };
    for (int d = 0; d <= 264; d += 4) {
      const FwdInstance* got = find_fwd(key.family, key.dataflow, key.dtype, key.variant, d);
      const int want = scan(fwd_instances(), same, d);
      ASSERT_EQ(got == nullptr ? -1 : got->d, want) << key.name << " at D = " << d;
      if (got != nullptr) EXPECT_TRUE(same(*got)) << got->name;
    }
    EXPECT_TRUE(has_family(key.family));
  }
  for (const BwdInstance& key : bwd_instances()) {
    auto same = [&](const BwdInstance& in) {
      return in.family == key.family && in.dtype == key.dtype && in.variant == key.variant;
    };
    for (int d = 0; d <= 264; d += 4) {
      const BwdInstance* got = find_bwd(key.family, key.dtype, key.variant, d);
      ASSERT_EQ(got == nullptr ? -1 : got->d, scan(bwd_instances(), same, d)) << key.name << " at D = " << d;
      if (got != nullptr) EXPECT_TRUE(same(*got)) << got->name;
    }
    EXPECT_TRUE(has_family(key.family));
  }
  EXPECT_EQ(find_fwd(Family::sm80, Dataflow::automatic, DType::bf16, VariantId::plain, 64), nullptr);
}

TEST(CudaRegistry, StoredNamesAreTheInstanceNames) {
  for (const FwdInstance& in : fwd_instances()) {
    EXPECT_EQ(in.name, std::string(name(in.dataflow)) + "_" + name(in.family) + "_" + std::string(name(in.dtype)) +
                           "_d" + std::to_string(in.d) + suffix(in.variant));
  }
  for (const BwdInstance& in : bwd_instances()) {
    const std::string base = std::string("bwd_") + name(in.family) + "_" + std::string(name(in.dtype)) + "_d" +
                             std::to_string(in.d) + suffix(in.variant);
    EXPECT_EQ(in.name, base);
    EXPECT_EQ(in.name_det, base + " (deterministic)");
  }
  const std::string& padded = padded_name("flash_sm80_bf16_d64", 40);
  EXPECT_EQ(padded, "flash_sm80_bf16_d64 (D=40 zero-padded)");
  EXPECT_EQ(&padded_name("flash_sm80_bf16_d64", 40), &padded);  // built once, then kept
}
