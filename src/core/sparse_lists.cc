#include "src/core/sparse_lists.h"

#include <algorithm>

namespace flatattn {

namespace {

IntView counts_view(const std::vector<std::int32_t>& v, const HostLists& l) {
  IntView w;
  w.data = v.data();
  // A dim of extent 1 broadcasts (stride 0), as in the user's lists.
  w.stride[0] = l.nb == 1 ? 0 : l.nh * l.rows, w.stride[1] = l.nh == 1 ? 0 : l.rows, w.stride[2] = 1, w.stride[3] = 0;
  return w;
}

IntView index_view(const std::vector<std::int32_t>& v, const HostLists& l) {
  IntView w;
  w.data = v.data();
  w.stride[0] = l.nb == 1 ? 0 : l.nh * l.rows * l.width, w.stride[1] = l.nh == 1 ? 0 : l.rows * l.width;
  w.stride[2] = l.width, w.stride[3] = 1;
  w.width = l.width;
  return w;
}

void resize(HostLists& l) {
  const std::size_t rows = static_cast<std::size_t>(l.nb * l.nh * l.rows);
  l.num.assign(rows, 0);
  l.full_num.assign(rows, 0);
  l.idx.assign(rows * static_cast<std::size_t>(std::max<std::int64_t>(l.width, 1)), 0);
  l.full_idx.assign(rows * static_cast<std::size_t>(std::max<std::int64_t>(l.width, 1)), 0);
}

}  // namespace

BlockLists HostLists::view() const {
  BlockLists b;
  b.num = counts_view(num, *this);
  b.idx = index_view(idx, *this);
  b.full_num = counts_view(full_num, *this);
  b.full_idx = index_view(full_idx, *this);
  return b;
}

HostLists transpose_lists(const BlockLists& lists, std::int64_t nb, std::int64_t nh, std::int64_t rows,
                          std::int64_t cols) {
  HostLists t;
  t.nb = nb, t.nh = nh, t.rows = cols, t.width = rows;
  resize(t);
  for (std::int64_t b = 0; b < nb; ++b)
    for (std::int64_t h = 0; h < nh; ++h) {
      const std::int64_t base = (b * nh + h) * cols;
      // Rows ascending: each column's list comes out sorted.
      for (std::int64_t r = 0; r < rows; ++r) {
        for (int s = 0; s < lists.partial_count(b, h, r); ++s) {
          const std::int64_t c = lists.idx.at(b, h, r, s);
          t.idx[(base + c) * t.width + t.num[base + c]++] = static_cast<std::int32_t>(r);
        }
        for (int s = 0; s < lists.full_count(b, h, r); ++s) {
          const std::int64_t c = lists.full_idx.at(b, h, r, s);
          t.full_idx[(base + c) * t.width + t.full_num[base + c]++] = static_cast<std::int32_t>(r);
        }
      }
    }
  return t;
}

HostLists local_global_lists(const SparseSpec& s, const MaskSpec& m, const std::vector<SeqLengths>& lengths) {
  HostLists l;
  l.nb = static_cast<std::int64_t>(lengths.size()), l.nh = 1, l.rows = s.nqb, l.width = s.nkb;
  resize(l);
  for (std::int64_t b = 0; b < l.nb; ++b) {
    const std::int64_t nq = lengths[b].nq, nk = lengths[b].nk;
    const std::int64_t gcount = s.global_count(b);
    std::vector<std::int64_t> g(static_cast<std::size_t>(gcount));
    for (std::int64_t x = 0; x < gcount; ++x) g[x] = s.globals.at(b, 0, 0, x);
    // Whether a global position lies in [a, e).
    auto any_global = [&](std::int64_t a, std::int64_t e) {
      auto it = std::lower_bound(g.begin(), g.end(), a);
      return it != g.end() && *it < e;
    };
    for (std::int64_t r = 0; r * s.block_q < nq; ++r) {
      const std::int64_t i0 = r * s.block_q, i1 = std::min(nq, i0 + s.block_q) - 1;  // rows [i0, i1]
      const bool global_row = any_global(i0, i1 + 1);
      const std::int64_t row = b * l.rows + r;
      for (std::int64_t c = 0; c * s.block_kv < nk; ++c) {
        const std::int64_t j0 = c * s.block_kv, j1 = std::min(nk, j0 + s.block_kv) - 1;  // keys [j0, j1]
        bool band_touch = false;  // some row of the block sees some key of it
        for (std::int64_t i = i0; i <= i1 && !band_touch; ++i)
          band_touch = std::max(m.lo(i, nq, nk), j0) <= std::min(m.hi(i, nq, nk), j1);
        const bool band_full = m.lo(i1, nq, nk) <= j0 && m.hi(i0, nq, nk) >= j1;
        // A global row or key reaches the block unless causal keeps all of it right of the diagonal.
        const bool causal_ok = !s.causal || j0 <= m.diag(i1, nq, nk);
        const bool global_touch = causal_ok && (global_row || any_global(j0, j1 + 1));
        if (band_full) {
          l.full_idx[row * l.width + l.full_num[row]++] = static_cast<std::int32_t>(c);
        } else if (band_touch || global_touch) {
          l.idx[row * l.width + l.num[row]++] = static_cast<std::int32_t>(c);
        }
      }
    }
  }
  return l;
}

}  // namespace flatattn
