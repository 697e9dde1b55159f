// Block lists the library builds on the host: the transpose of a call's kv lists (the backward's
// per-key-block query lists) and the lists of local + global attention derived from the window and the
// global positions. Owned int32 arrays in the layout of src/core/sparse.h's IntView. The local + global
// verdict of each block comes from src/core/sparse_rows.h, which the CUDA derivation (src/cuda/sparse_derive.h)
// shares; the transpose is a scatter here and a per-column gather there (same lists, tested): both backends
// build the same lists.
#pragma once

#include <cstdint>
#include <vector>

#include "src/core/mask.h"
#include "src/core/sparse.h"

namespace flatattn {

/// Contiguous (nb, nh, rows) counts and (nb, nh, rows, width) indices, partial and full.
struct HostLists {
  std::int64_t nb = 1, nh = 1, rows = 0, width = 0;
  std::vector<std::int32_t> num, idx, full_num, full_idx;

  /// Views of the arrays (valid while this object lives and is not resized).
  [[nodiscard]] BlockLists view() const;
};

/// For each (b, h) of an nb x nh grid and each column block c < cols, the row blocks r < rows whose list in
/// `lists` holds c (partial and full kept apart), ascending. A scatter of valid lists (indices in [0, cols),
/// as validation requires), O(listed blocks); the same lists as sparse_rows.h's transposed_block per column.
HostLists transpose_lists(const BlockLists& lists, std::int64_t nb, std::int64_t nh, std::int64_t rows,
                          std::int64_t cols);

/// Sequence lengths (nq, nk) of one sequence.
struct SeqLengths {
  std::int64_t nq = 0, nk = 0;
};

/// Per sequence b (lengths[b]) the key blocks of each query block under the local + global rule of s (band
/// m, the global positions of s): full where the band covers the whole block inside the sequence, partial
/// where the band or a global row or key may reach it (the element rule decides inside), absent elsewhere.
/// Shaped (B, 1, s.nqb, s.nkb).
HostLists local_global_lists(const SparseSpec& s, const MaskSpec& m, const std::vector<SeqLengths>& lengths);

}  // namespace flatattn
