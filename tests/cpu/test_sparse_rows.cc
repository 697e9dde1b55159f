// The per-block rules the library derives sparse lists with (src/core/sparse_rows.h), shared by the host
// builders (src/core/sparse_lists.cc) and the CUDA derivation (src/cuda/sparse_derive.cu): band_touches
// against the loop over rows it replaces, the local + global lists against a block-by-block reference built
// from the element rule (and every visible element inside a listed block), the per-column gather the device
// transposes with (transposed_block) against the host's transpose_lists and a scatter written here, and the
// clamps that keep device reads inside their tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "src/core/sparse_lists.h"
#include "src/core/sparse_rows.h"

using namespace flatattn;

namespace {

/// A random band: none, causal in either alignment, windows (some one-sided), causal + window.
MaskSpec random_mask(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> pick(0, 4), w(0, 90);
  MaskSpec m;
  m.bottom_right = rng() & 1;
  switch (pick(rng)) {
    case 0: break;                                              // no band
    case 1: m.right = 0; break;                                 // causal
    case 2: m.left = w(rng), m.right = w(rng); break;           // window
    case 3: m.left = (rng() & 1) ? -1 : w(rng), m.right = (rng() & 1) ? -1 : w(rng); break;  // one-sided
    default: m.left = w(rng), m.right = 0; break;               // causal + window
  }
  return m;
}

TEST(SparseRows, BandTouchesIsTheLoopOverRows) {
  std::mt19937_64 rng(20261207);
  std::uniform_int_distribution<std::int64_t> len(0, 260), blk(1, 70);
  int touched = 0, missed = 0;
  for (int t = 0; t < 4000; ++t) {
    const MaskSpec m = random_mask(rng);
    const std::int64_t nq = len(rng) + 1, nk = len(rng) + 1, bq = blk(rng), bk = blk(rng);
    for (std::int64_t i0 = 0; i0 < nq; i0 += bq)
      for (std::int64_t j0 = 0; j0 < nk; j0 += bk) {
        const std::int64_t i1 = std::min(nq, i0 + bq) - 1, j1 = std::min(nk, j0 + bk) - 1;
        bool want = false;
        for (std::int64_t i = i0; i <= i1 && !want; ++i)
          want = std::max(m.lo(i, nq, nk), j0) <= std::min(m.hi(i, nq, nk), j1);
        ASSERT_EQ(band_touches(m, i0, i1, j0, j1, nq, nk), want)
            << "case " << t << ": rows [" << i0 << ", " << i1 << "], keys [" << j0 << ", " << j1 << "], nq " << nq
            << ", nk " << nk << ", left " << m.left << ", right " << m.right << ", bottom_right " << m.bottom_right;
        (want ? touched : missed)++;
      }
  }
  EXPECT_GT(touched, 1000);  // both verdicts were exercised
  EXPECT_GT(missed, 1000);
}

/// Global positions (B', G) with optional counts, as validation hands them to SparseSpec.
struct Globals {
  std::vector<std::int32_t> pos, counts;
  std::int64_t nb = 1, g = 0;
  void attach(SparseSpec& s) const {
    s.globals = IntView{};
    s.globals.data = pos.empty() ? nullptr : pos.data();
    s.globals.stride[0] = nb == 1 ? 0 : g, s.globals.stride[3] = 1, s.globals.width = g;
    s.global_counts = IntView{};
    if (!counts.empty()) s.global_counts.data = counts.data(), s.global_counts.stride[0] = nb == 1 ? 0 : 1;
  }
};

/// Sorted distinct positions in [0, limit) per sequence (often the first and the last one among them), G
/// columns; with counts, rows hold 0..G positions and garbage past their count.
Globals random_globals(std::mt19937_64& rng, std::int64_t nb, std::int64_t limit) {
  Globals gl;
  gl.nb = nb, gl.g = std::min<std::int64_t>(limit, std::uniform_int_distribution<std::int64_t>(0, 5)(rng));
  const bool with_counts = rng() & 1;
  gl.pos.assign(static_cast<std::size_t>(nb * gl.g), -3);
  for (std::int64_t b = 0; b < nb; ++b) {
    std::vector<std::int32_t> all(static_cast<std::size_t>(limit));
    for (std::int64_t x = 0; x < limit; ++x) all[x] = static_cast<std::int32_t>(x);
    std::shuffle(all.begin(), all.end(), rng);
    if (limit > 0 && (rng() & 1)) std::iter_swap(all.begin(), std::find(all.begin(), all.end(), 0));
    if (limit > 1 && (rng() & 1))
      std::iter_swap(all.begin() + 1, std::find(all.begin(), all.end(), static_cast<std::int32_t>(limit - 1)));
    const std::int64_t k = with_counts ? std::uniform_int_distribution<std::int64_t>(0, gl.g)(rng) : gl.g;
    std::sort(all.begin(), all.begin() + k);
    for (std::int64_t x = 0; x < k; ++x) gl.pos[b * gl.g + x] = all[x];
    if (with_counts) gl.counts.push_back(static_cast<std::int32_t>(k));
  }
  return gl;
}

TEST(SparseRows, LocalGlobalListsMatchTheBlockRule) {
  std::mt19937_64 rng(1607);
  std::uniform_int_distribution<std::int64_t> len(0, 200);
  const std::int64_t sizes[] = {1, 7, 16, 32, 64, 128};
  std::uniform_int_distribution<int> size(0, 5);
  int full = 0, partial = 0, none = 0;
  for (int t = 0; t < 600; ++t) {
    const MaskSpec m = random_mask(rng);
    const std::int64_t batch = 1 + static_cast<std::int64_t>(rng() % 3);
    std::vector<SeqLengths> lengths(static_cast<std::size_t>(batch));
    std::int64_t nq_max = 0, nk_max = 0;
    for (auto& l : lengths) {
      l.nq = len(rng), l.nk = (rng() & 1) ? l.nq : len(rng);  // Nq != Nk too, and empty sequences
      nq_max = std::max(nq_max, l.nq), nk_max = std::max(nk_max, l.nk);
    }
    SparseSpec s;
    s.on = true, s.rule = SparseRule::local_global;
    s.block_q = static_cast<int>(sizes[size(rng)]), s.block_kv = static_cast<int>(sizes[size(rng)]);
    s.nqb = (nq_max + s.block_q - 1) / s.block_q, s.nkb = (nk_max + s.block_kv - 1) / s.block_kv;
    s.causal = m.right == 0 && (rng() & 1);
    const Globals gl = random_globals(rng, (rng() & 1) ? batch : 1, std::max(nq_max, nk_max));
    gl.attach(s);
    const HostLists l = local_global_lists(s, m, lengths);
    const BlockLists v = l.view();
    ASSERT_EQ(l.nb, batch);
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t nq = lengths[b].nq, nk = lengths[b].nk;
      const std::int64_t gcount = s.global_count(b);
      auto global = [&](std::int64_t x) {
        for (std::int64_t g = 0; g < gcount; ++g)
          if (s.globals.at(b, 0, 0, g) == x) return true;
        return false;
      };
      for (std::int64_t r = 0; r < s.nqb; ++r) {
        std::vector<std::int32_t> want_p, want_f;
        for (std::int64_t c = 0; c < s.nkb; ++c) {
          const std::int64_t i0 = r * s.block_q, j0 = c * s.block_kv;
          if (i0 >= nq || j0 >= nk) continue;
          const std::int64_t i1 = std::min(nq, i0 + s.block_q) - 1, j1 = std::min(nk, j0 + s.block_kv) - 1;
          bool all = true, any = false, glob = false;
          for (std::int64_t i = i0; i <= i1; ++i)
            for (std::int64_t j = j0; j <= j1; ++j) {
              const bool vis = m.visible(i, j, nq, nk);
              all = all && vis, any = any || vis;
              glob = glob || global(i) || global(j);
            }
          // The documented rule: a global row or key reaches a block unless causal keeps the whole block right
          // of the diagonal of its last row.
          if (s.causal && j0 > m.diag(i1, nq, nk)) glob = false;
          if (all) want_f.push_back(static_cast<std::int32_t>(c));
          else if (any || glob) want_p.push_back(static_cast<std::int32_t>(c));
          // Every element the local + global rule shows lies in a listed block.
          for (std::int64_t i = i0; i <= i1; ++i)
            for (std::int64_t j = j0; j <= j1; ++j)
              if (local_global_visible(s, m, b, i, j, nq, nk))
                ASSERT_TRUE(all || any || glob) << "case " << t << ": (" << i << ", " << j << ") in no listed block";
        }
        const std::string at = "case " + std::to_string(t) + " b " + std::to_string(b) + " r " + std::to_string(r);
        ASSERT_EQ(v.partial_count(b, 0, r), static_cast<int>(want_p.size())) << at;
        ASSERT_EQ(v.full_count(b, 0, r), static_cast<int>(want_f.size())) << at;
        for (std::size_t x = 0; x < want_p.size(); ++x) ASSERT_EQ(v.idx.at(b, 0, r, x), want_p[x]) << at;
        for (std::size_t x = 0; x < want_f.size(); ++x) ASSERT_EQ(v.full_idx.at(b, 0, r, x), want_f[x]) << at;
        full += static_cast<int>(want_f.size()), partial += static_cast<int>(want_p.size());
        none += static_cast<int>(s.nkb - want_f.size() - want_p.size());
      }
    }
  }
  EXPECT_GT(full, 100);
  EXPECT_GT(partial, 100);
  EXPECT_GT(none, 100);
}

TEST(SparseRows, TransposeIsTheScatterOfTheKvLists) {
  std::mt19937_64 rng(77);
  for (int t = 0; t < 300; ++t) {
    const std::int64_t nb = 1 + rng() % 2, nh = 1 + rng() % 3, rows = rng() % 12, cols = rng() % 12;
    const bool with_full = rng() & 1;
    const std::int64_t width = cols + static_cast<std::int64_t>(rng() % 3);  // W >= the counts
    std::vector<std::int32_t> num(nb * nh * rows), idx(nb * nh * rows * width, -7), fnum(num.size()),
        fidx(idx.size(), -7);
    for (std::int64_t row = 0; row < nb * nh * rows; ++row)
      for (std::int64_t c = 0; c < cols; ++c) {
        const int draw = static_cast<int>(rng() % 3);  // 0 unlisted, 1 partial, 2 full
        if (draw == 1 || (draw == 2 && !with_full)) idx[row * width + num[row]++] = static_cast<std::int32_t>(c);
        else if (draw == 2) fidx[row * width + fnum[row]++] = static_cast<std::int32_t>(c);
      }
    const BlockLists kv = contiguous_lists(num.data(), idx.data(), with_full ? fnum.data() : nullptr,
                                           with_full ? fidx.data() : nullptr, nb, nh, rows, width);
    const HostLists q = transpose_lists(kv, nb, nh, rows, cols);
    const BlockLists qv = q.view();
    // The device's gather: per column, the rows that list it (transposed_block), ascending.
    std::vector<std::vector<std::int32_t>> gp(nb * nh * cols), gf(nb * nh * cols);
    for (std::int64_t b = 0; b < nb; ++b)
      for (std::int64_t h = 0; h < nh; ++h)
        for (std::int64_t c = 0; c < cols; ++c)
          for (std::int64_t r = 0; r < rows; ++r) {
            const unsigned in = transposed_block(kv, b, h, r, c);
            if (in & 1u) gp[(b * nh + h) * cols + c].push_back(static_cast<std::int32_t>(r));
            if (in & 2u) gf[(b * nh + h) * cols + c].push_back(static_cast<std::int32_t>(r));
          }
    // The scatter: rows ascending, each listed block appends its row to its column.
    std::vector<std::vector<std::int32_t>> wp(nb * nh * cols), wf(nb * nh * cols);
    for (std::int64_t b = 0; b < nb; ++b)
      for (std::int64_t h = 0; h < nh; ++h)
        for (std::int64_t r = 0; r < rows; ++r) {
          const std::int64_t row = (b * nh + h) * rows + r;
          for (int x = 0; x < num[row]; ++x) wp[(b * nh + h) * cols + idx[row * width + x]].push_back(static_cast<std::int32_t>(r));
          if (with_full)
            for (int x = 0; x < fnum[row]; ++x) wf[(b * nh + h) * cols + fidx[row * width + x]].push_back(static_cast<std::int32_t>(r));
        }
    for (std::int64_t b = 0; b < nb; ++b)
      for (std::int64_t h = 0; h < nh; ++h)
        for (std::int64_t c = 0; c < cols; ++c) {
          const auto& p = wp[(b * nh + h) * cols + c];
          const auto& f = wf[(b * nh + h) * cols + c];
          const std::string at = "case " + std::to_string(t) + " (" + std::to_string(b) + ", " + std::to_string(h) +
                                 ", " + std::to_string(c) + ")";
          ASSERT_EQ(gp[(b * nh + h) * cols + c], p) << at << ": gather (device) vs scatter, partial";
          ASSERT_EQ(gf[(b * nh + h) * cols + c], f) << at << ": gather (device) vs scatter, full";
          ASSERT_EQ(qv.partial_count(b, h, c), static_cast<int>(p.size())) << at;
          ASSERT_EQ(qv.full_count(b, h, c), static_cast<int>(f.size())) << at;
          for (std::size_t x = 0; x < p.size(); ++x) ASSERT_EQ(qv.idx.at(b, h, c, x), p[x]) << at;
          for (std::size_t x = 0; x < f.size(); ++x) ASSERT_EQ(qv.full_idx.at(b, h, c, x), f[x]) << at;
        }
  }
}

// What the device may hold (contents are not validated there): counts past the width or negative are clamped
// before any read, so the search stays inside the row; global counts are clamped to G.
TEST(SparseRows, ClampsKeepReadsInsideTheTensors) {
  // One row of W = 3 followed by a sentinel the search must not reach.
  std::vector<std::int32_t> row = {2, 5, 9, 11};
  std::vector<std::int32_t> count = {1000};
  const BlockLists kv = contiguous_lists(count.data(), row.data(), nullptr, nullptr, 1, 1, 1, 3);
  EXPECT_EQ(transposed_block(kv, 0, 0, 0, 9), 1u);
  EXPECT_EQ(transposed_block(kv, 0, 0, 0, 11), 0u) << "read past W = 3";
  count[0] = -4;
  EXPECT_EQ(transposed_block(kv, 0, 0, 0, 2), 0u) << "a negative count lists nothing";

  SparseSpec s;
  std::vector<std::int32_t> pos = {3, 8, 40}, gcount = {99};
  s.globals.data = pos.data(), s.globals.stride[3] = 1, s.globals.width = 2;  // G = 2: 40 is outside
  s.global_counts.data = gcount.data();
  EXPECT_EQ(safe_global_count(s, 0), 2);
  EXPECT_TRUE(any_global_in(s, 0, safe_global_count(s, 0), 8, 9));
  EXPECT_FALSE(any_global_in(s, 0, safe_global_count(s, 0), 9, 100)) << "read past G = 2";
  gcount[0] = -1;
  EXPECT_EQ(safe_global_count(s, 0), 0);
}

}  // namespace

// GlobalSpan (src/core/sparse.h), which the CUDA kernels' local + global rule asks instead of is_global over all
// positions (common/sparse.cuh apply_sparse_rule): over random sorted positions (0-40 per sequence, with and without
// counts, garbage past a count) and random ranges [a, e) (empty, reversed, past either end), contains(x) equals
// is_global(b, x) for every x in the range, [lo, hi) are exactly the positions inside it, and first is position lo.
TEST(SparseRows, GlobalSpanIsIsGlobalInsideItsRange) {
  std::mt19937_64 rng(20261207);
  std::int64_t spans = 0, multi = 0, single = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const std::int64_t nb = (trial & 1) ? 3 : 1, limit = std::uniform_int_distribution<std::int64_t>(1, 300)(rng);
    const std::int64_t g = std::min<std::int64_t>(limit, std::uniform_int_distribution<std::int64_t>(0, 40)(rng));
    const bool with_counts = rng() & 1;
    Globals gl;
    gl.nb = nb, gl.g = g;
    gl.pos.assign(static_cast<std::size_t>(nb * g), -7);
    for (std::int64_t b = 0; b < nb; ++b) {
      std::vector<std::int32_t> all(static_cast<std::size_t>(limit));
      for (std::int64_t x = 0; x < limit; ++x) all[static_cast<std::size_t>(x)] = static_cast<std::int32_t>(x);
      std::shuffle(all.begin(), all.end(), rng);
      const std::int64_t k = with_counts ? std::uniform_int_distribution<std::int64_t>(0, g)(rng) : g;
      std::sort(all.begin(), all.begin() + k);
      for (std::int64_t x = 0; x < k; ++x) gl.pos[static_cast<std::size_t>(b * g + x)] = all[static_cast<std::size_t>(x)];
      if (with_counts) gl.counts.push_back(static_cast<std::int32_t>(k));
    }
    SparseSpec s;
    s.rule = SparseRule::local_global;
    gl.attach(s);
    std::uniform_int_distribution<std::int64_t> at(-20, limit + 20), len(-3, 40);
    for (int q = 0; q < 30; ++q) {
      const std::int64_t b = std::uniform_int_distribution<std::int64_t>(0, nb - 1)(rng);
      const std::int64_t a = at(rng), e = a + len(rng);
      const GlobalSpan span = s.global_span(b, a, e);
      std::int64_t inside = 0;
      for (std::int64_t x = a; x < e; ++x) {
        ASSERT_EQ(span.contains(s, b, x), s.is_global(b, x)) << "trial " << trial << " b " << b << " x " << x
                                                             << " in [" << a << ", " << e << ")";
        inside += s.is_global(b, x);
      }
      ASSERT_EQ(span.hi - span.lo, inside) << "trial " << trial << " [" << a << ", " << e << ")";
      ASSERT_EQ(span.empty(), inside == 0);
      if (!span.empty()) {
        ASSERT_EQ(span.first, s.globals.at(b, 0, 0, span.lo));
        ASSERT_GE(span.first, a);
        ASSERT_LT(span.first, e);
      }
      ++spans, multi += inside > 1, single += inside == 1;
    }
  }
  EXPECT_GT(multi, 500);  // the binary search inside the span, the single comparison, and empty spans all ran
  EXPECT_GT(single, 500);
  EXPECT_GT(spans - multi - single, 500);
}
