// seq_rows (src/cuda/common/seq_rows.h), the bound every kernel puts on varlen metadata, on the host (no GPU
// needed): for every pair of offsets around and far beyond the packed rows, the span stays inside
// [0, total], a valid pair gives its exact rows, and an invalid one is empty and flagged with the right bit.
#include <gtest/gtest.h>

#include <climits>
#include <vector>

#include "src/cuda/common/seq_rows.h"

using namespace flatattn::cuda;

TEST(SeqRows, StaysInsideThePackedRowsForAnyOffsets) {
  const std::vector<int> values = {INT_MIN, INT_MIN + 1, -1000000, -2, -1, 0, 1, 2, 5, 9, 10, 11, 12, 1000000,
                                   INT_MAX - 1, INT_MAX};
  for (int total : {0, 1, 10, INT_MAX})
    for (int max_len : {0, 1, 3, 10, INT_MAX})
      for (int b : {0, 1})
        for (int a : values)
          for (int e : values) {
            const int cu[3] = {b == 0 ? a : 0, b == 0 ? e : a, e};
            const SeqRows r = seq_rows(cu, b, total, max_len, kMetaCuQ, kMetaMaxQ);
            const long long start = r.start, end = static_cast<long long>(r.start) + r.len;
            ASSERT_TRUE(0 <= start && start <= end && end <= total)
                << "a " << a << " e " << e << " b " << b << " total " << total << ": [" << start << ", " << end << ")";
            const bool order_ok = a >= 0 && e >= a && e <= total && (b != 0 || a == 0);
            const bool valid = order_ok && static_cast<long long>(e) - a <= max_len;
            if (valid) {
              EXPECT_EQ(r.bad, 0u);
              EXPECT_EQ(r.start, a);
              EXPECT_EQ(r.len, e - a);
            } else {
              EXPECT_EQ(r.len, 0);
              EXPECT_EQ(r.bad, order_ok ? kMetaMaxQ : kMetaCuQ) << "a " << a << " e " << e << " b " << b;
            }
          }
}
