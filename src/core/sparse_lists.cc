#include "src/core/sparse_lists.h"

#include <algorithm>

#include "src/core/sparse_rows.h"

namespace flatattn {

namespace {

void resize(HostLists& l) {
  const std::size_t rows = static_cast<std::size_t>(l.nb * l.nh * l.rows);
  l.num.assign(rows, 0);
  l.full_num.assign(rows, 0);
  l.idx.assign(rows * static_cast<std::size_t>(std::max<std::int64_t>(l.width, 1)), 0);
  l.full_idx.assign(rows * static_cast<std::size_t>(std::max<std::int64_t>(l.width, 1)), 0);
}

}  // namespace

BlockLists HostLists::view() const {
  return contiguous_lists(num.data(), idx.data(), full_num.data(), full_idx.data(), nb, nh, rows, width);
}

HostLists transpose_lists(const BlockLists& lists, std::int64_t nb, std::int64_t nh, std::int64_t rows,
                          std::int64_t cols) {
  HostLists t;
  t.nb = nb, t.nh = nh, t.rows = cols, t.width = rows;
  resize(t);
  // A scatter, O(listed blocks): rows ascending, so each column's list comes out sorted. The CUDA derivation
  // gathers each column instead (transposed_block, sparse_rows.h: O(rows log W) per column, one warp each);
  // for valid lists both give these lists (SparseRows.TransposeIsTheScatterOfTheKvLists, CudaSparseDerive).
  for (std::int64_t b = 0; b < nb; ++b)
    for (std::int64_t h = 0; h < nh; ++h) {
      const std::int64_t base = (b * nh + h) * cols;
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
    for (std::int64_t r = 0; r < l.rows && r * s.block_q < nq; ++r) {
      const LocalGlobalRow lr = local_global_row(s, b, r, nq);
      const std::int64_t row = b * l.rows + r;
      for (std::int64_t c = 0; c < l.width && c * s.block_kv < nk; ++c) {
        const BlockKind k = local_global_block(s, m, b, lr, c, nq, nk);
        if (k == BlockKind::full) {
          l.full_idx[row * l.width + l.full_num[row]++] = static_cast<std::int32_t>(c);
        } else if (k == BlockKind::partial) {
          l.idx[row * l.width + l.num[row]++] = static_cast<std::int32_t>(c);
        }
      }
    }
  }
  return l;
}

}  // namespace flatattn
