// The named feature cases shared by the forward and backward tests: one Case per feature, small enough
// for the fp64 oracle (N ~ 100), each with the shape that stresses it (Nq != Nk both ways, empty and
// length-1 varlen sequences, fully masked rows, ...).
#pragma once

#include "tests/common/harness.h"

namespace flatattn::testing {

enum class Feature {
  plain, short_q, causal_br, causal_br_tall, causal_tl, causal_tl_wide, window, window_causal_tl, softcap,
  gqa, mqa, varlen, strided, large_logits, fully_masked
};

/// Every feature, for INSTANTIATE_TEST_SUITE_P.
inline constexpr Feature kAllFeatures[] = {
    Feature::plain,  Feature::short_q, Feature::causal_br, Feature::causal_br_tall, Feature::causal_tl,
    Feature::causal_tl_wide, Feature::window, Feature::window_causal_tl, Feature::softcap, Feature::gqa,
    Feature::mqa, Feature::varlen, Feature::strided, Feature::large_logits, Feature::fully_masked};

const char* feature_name(Feature f);

/// The case of feature f in dtype dt (return_lse on).
Case feature_case(Feature f, DType dt);

}  // namespace flatattn::testing
