// Validation of the sparse arguments (include/flatattn/sparse.h) into Problem::sparse: shapes, dtypes and
// devices always; the contents (counts, indices, bit-block offsets, global positions) where the host can
// read them (CPU tensors). Every failure is an Error naming the tensor before anything is written.
#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "src/core/sparse_lists.h"
#include "src/core/validate.h"

namespace flatattn {

namespace {

std::string shape_of(const TensorView& t) {
  std::ostringstream s;
  s << "(";
  for (int i = 0; i < t.rank; ++i) s << (i ? ", " : "") << t.shape[i];
  s << ")";
  return s.str();
}

std::string str(std::int64_t x) { return std::to_string(x); }

/// "[a, b, c]" (an element's index in an error message), built in a stream: GCC 12's -Wrestrict misfires on
/// chains of std::string operator+ here.
std::string index_str(std::initializer_list<std::int64_t> xs) {
  std::ostringstream s;
  s << "[";
  bool first = true;
  for (std::int64_t x : xs) s << (first ? "" : ", ") << x, first = false;
  s << "]";
  return s.str();
}

/// An int32 tensor of `rank` dims on the call's device with a contiguous last dim; dims[i] >= 0 is the
/// required extent, -1 any extent, -2 one of {1, B} / {1, Hq} given by alt[i].
IntView int_view(const TensorView& t, const char* name, const Problem& p, std::initializer_list<std::int64_t> dims,
                 std::initializer_list<std::int64_t> alt, const char* layout) {
  FLATATTN_REQUIRE(t.present(), name, "absent", std::string("required, int32 ") + layout, "pass the tensor");
  FLATATTN_REQUIRE(t.dtype == DType::i32, name, std::string("dtype ") + std::string(flatattn::name(t.dtype)),
                   std::string("must be int32 ") + layout, "convert it to int32");
  FLATATTN_REQUIRE(t.device == p.device, name, "on another device than q", "must be on q's device",
                   "move it to q's device");
  const int rank = static_cast<int>(dims.size());
  FLATATTN_REQUIRE(t.rank == rank, name, "shape " + shape_of(t), std::string("must be ") + layout,
                   "pass a tensor of that shape");
  int i = 0;
  auto a = alt.begin();
  for (std::int64_t want : dims) {
    const std::int64_t got = t.shape[i];
    const bool ok = want >= 0 ? got == want : want == -1 ? got >= 0 : (got == 1 || got == *a);
    FLATATTN_REQUIRE(ok, name, "shape " + shape_of(t),
                     std::string("must be ") + layout + " with dim " + str(i) + " = " +
                         (want >= 0 ? str(want) : want == -1 ? "any" : "1 or " + str(*a)),
                     "build the lists for this call's shapes and block sizes");
    ++i, ++a;
  }
  FLATATTN_REQUIRE(t.numel() == 0 || t.stride[rank - 1] == 1 || t.shape[rank - 1] <= 1, name,
                   "last-dim stride " + str(t.stride[rank - 1]), "the last dim must be contiguous",
                   "pass a contiguous tensor (.contiguous())");
  FLATATTN_REQUIRE(t.data != nullptr || t.numel() == 0, name, "null data pointer", "must point to the data",
                   "pass the buffer");
  IntView v;
  v.data = static_cast<const std::int32_t*>(t.data);
  // Counts (B', H', R) and indices (B', H', R, W) address as (b, h, r, s); globals (B', G) as (b, -, -, g)
  // and their counts (B') as (b).
  if (rank >= 3) {
    for (int d = 0; d < rank; ++d) v.stride[d] = t.shape[d] <= 1 ? 0 : t.stride[d];
    if (rank == 4) v.width = t.shape[3];
  } else {
    v.stride[0] = t.shape[0] <= 1 ? 0 : t.stride[0];
    if (rank == 2) v.stride[3] = t.stride[1], v.width = t.shape[1];
  }
  return v;
}

/// One direction's lists (counts (B', H', rows), indices (B', H', rows, W)); `cols` blocks to index.
BlockLists lists_of(const TensorView& num, const TensorView& idx, const TensorView& fnum, const TensorView& fidx,
                    const char* const names[4], const Problem& p, std::int64_t rows, std::int64_t cols) {
  const std::string counts = "(B' in {1, B}, H' in {1, Hq}, " + str(rows) + ")";
  const std::string index = "(B', H', " + str(rows) + ", W)";
  BlockLists l;
  l.num = int_view(num, names[0], p, {-2, -2, rows}, {p.batch, p.hq}, counts.c_str());
  l.idx = int_view(idx, names[1], p, {-2, -2, rows, -1}, {p.batch, p.hq}, index.c_str());
  FLATATTN_REQUIRE(fnum.present() == fidx.present(), fnum.present() ? names[3] : names[2], "absent",
                   std::string("given together with ") + (fnum.present() ? names[2] : names[3]),
                   "pass both full-block tensors or neither");
  if (fnum.present()) {
    l.full_num = int_view(fnum, names[2], p, {-2, -2, rows}, {p.batch, p.hq}, counts.c_str());
    l.full_idx = int_view(fidx, names[3], p, {-2, -2, rows, -1}, {p.batch, p.hq}, index.c_str());
  }
  (void)cols;
  return l;
}

/// The contents of one direction's lists (CPU): counts within [0, min(W, cols)], indices in [0, cols),
/// strictly increasing, no block both partial and full.
void check_contents(const BlockLists& l, const char* const names[4], std::int64_t nb, std::int64_t nh,
                    std::int64_t rows, std::int64_t cols) {
  std::vector<char> seen(static_cast<std::size_t>(cols));
  for (std::int64_t b = 0; b < nb; ++b)
    for (std::int64_t h = 0; h < nh; ++h)
      for (std::int64_t r = 0; r < rows; ++r) {
        std::fill(seen.begin(), seen.end(), 0);
        for (int which = 0; which < 2; ++which) {
          const IntView& n = which ? l.full_num : l.num;
          const IntView& x = which ? l.full_idx : l.idx;
          if (!n.present()) continue;
          const char* nn = names[which * 2];
          const char* xn = names[which * 2 + 1];
          const std::string where = index_str({b, h, r});
          const std::int32_t c = n.at(b, h, r);
          FLATATTN_REQUIRE(c >= 0 && c <= x.width && c <= cols, nn, where + " = " + str(c),
                           "must be in [0, min(W = " + str(x.width) + ", number of blocks = " + str(cols) + ")]",
                           "count only the listed blocks of this row");
          std::int32_t prev = -1;
          for (std::int32_t s = 0; s < c; ++s) {
            const std::int32_t v = x.at(b, h, r, s);
            const std::string at = index_str({b, h, r, s}) + " = " + str(v);
            FLATATTN_REQUIRE(v >= 0 && v < cols, xn, at, "must be a block index in [0, " + str(cols) + ")",
                             "list only blocks inside the sequence");
            FLATATTN_REQUIRE(v > prev, xn, at + " after " + str(prev),
                             "the first count indices of a row must be strictly increasing (no duplicates)",
                             "sort each row's listed blocks and drop repeats");
            FLATATTN_REQUIRE(!seen[v], xn, at, "a block may be listed as partial or as full, not both",
                             "list it once (full when no element of it is masked)");
            seen[v] = 1;
            prev = v;
          }
        }
      }
}

/// Whether two direction lists describe the same (row, col) blocks, partial and full (CPU).
void check_transpose(const BlockLists& kv, const BlockLists& q, std::int64_t nb, std::int64_t nh, const Problem& p) {
  const HostLists t = transpose_lists(kv, nb, nh, p.sparse.nqb, p.sparse.nkb);
  const BlockLists tv = t.view();
  for (std::int64_t b = 0; b < nb; ++b)
    for (std::int64_t h = 0; h < nh; ++h)
      for (std::int64_t c = 0; c < p.sparse.nkb; ++c)
        for (int which = 0; which < 2; ++which) {
          const int want = which ? tv.full_count(b, h, c) : tv.partial_count(b, h, c);
          const int got = which ? q.full_count(b, h, c) : q.partial_count(b, h, c);
          bool same = want == got;
          for (int s = 0; same && s < want; ++s)
            same = (which ? tv.full_idx : tv.idx).at(b, h, c, s) == (which ? q.full_idx : q.idx).at(b, h, c, s);
          FLATATTN_REQUIRE(same, which ? "block_sparse.full_q_indices" : "block_sparse.q_indices",
                           "the query blocks of key block " + index_str({b, h, c}),
                           "must be the exact transpose of the kv lists (" +
                               std::string(which ? "full_kv_indices" : "kv_indices") + ")",
                           "derive the q lists from the kv lists, or leave them absent (the library derives them)");
        }
}

/// Keeps the host lists the library built alive with the Problem.
struct Storage {
  HostLists kv, q;
};

}  // namespace

void check_sparse(const std::optional<BlockSparse>& bs, const std::optional<LocalGlobal>& lg, const Options& o,
                  bool backward, Problem& p) {
  if (!bs && !lg) return;
  SparseSpec& s = p.sparse;
  const bool host = p.device.kind == DeviceKind::cpu;
  // CUDA (issue 16): the forward and the backward take the caller's lists; the lists the library derives
  // (local + global alone; the backward's q lists when absent) are built on the device before the kernels run
  // (SparseSpec::derive_kv / derive_q, src/cuda/sparse_derive.h), from the same per-block rule as the host's
  // (src/core/sparse_rows.h). The lists' and positions' contents live on the device and are not checked there
  // (docs/sparse.md).
  s.on = true;
  s.causal = o.causal;
  const std::int64_t bq = bs ? bs->block_q : 128, bkv = bs ? bs->block_kv : 128;
  FLATATTN_REQUIRE(bq >= 1 && bq <= (1 << 20), "block_sparse.block_q", str(bq), "must be in [1, 2^20]",
                   "pass the query block size of the lists (FlexAttention: BLOCK_SIZE[0], 128)");
  FLATATTN_REQUIRE(bkv >= 1 && bkv <= (1 << 20), "block_sparse.block_kv", str(bkv), "must be in [1, 2^20]",
                   "pass the key block size of the lists (FlexAttention: BLOCK_SIZE[1], 128)");
  s.block_q = static_cast<int>(bq), s.block_kv = static_cast<int>(bkv);
  s.nqb = (p.nq + bq - 1) / bq;
  s.nkb = (p.nk + bkv - 1) / bkv;
  auto storage = std::make_shared<Storage>();

  if (lg) {
    FLATATTN_REQUIRE(lg->global_positions.present(), "local_global.global_positions", "absent",
                     "required: (B' in {1, B}, G) int32", "pass the global positions (G may be 0)");
    const TensorView& gp = lg->global_positions;
    const std::string layout = "(B' in {1, " + str(p.batch) + "}, G)";
    s.globals = int_view(gp, "local_global.global_positions", p, {-2, -1}, {p.batch, 0}, layout.c_str());
    if (lg->global_counts.present())
      s.global_counts = int_view(lg->global_counts, "local_global.global_counts", p, {-2}, {p.batch}, "(B')");
    FLATATTN_REQUIRE(!bs || !bs->mask_bits.present(), "block_sparse.mask_bits", "given with local_global",
                     "one element rule per call: bits or local + global", "drop one of them");
    s.rule = SparseRule::local_global;
    if (host) {
      const std::int64_t nb = gp.shape[0];
      for (std::int64_t b = 0; b < nb; ++b) {
        // The raw count (SparseSpec::global_count clamps it to [0, G] for the kernels).
        const std::int32_t c = s.global_counts.present() ? s.global_counts.at(b, 0, 0)
                                                         : static_cast<std::int32_t>(gp.shape[1]);
        FLATATTN_REQUIRE(c >= 0 && c <= gp.shape[1], "local_global.global_counts", index_str({b}) + " = " + str(c),
                         "must be in [0, G = " + str(gp.shape[1]) + "]", "count the positions of each sequence");
        std::int32_t prev = -1;
        for (std::int32_t g = 0; g < c; ++g) {
          const std::int32_t x = s.globals.at(b, 0, 0, g);
          FLATATTN_REQUIRE(x > prev && x < std::max(p.nq, p.nk), "local_global.global_positions",
                           index_str({b, g}) + " = " + str(x) + " after " + str(prev),
                           "must be strictly increasing positions in [0, max(Nq, Nk) = " +
                               str(std::max(p.nq, p.nk)) + ")",
                           "sort the positions, drop repeats and positions past the sequence");
          prev = x;
        }
      }
    }
  }

  if (bs) {
    static const char* const kv_names[4] = {"block_sparse.kv_num_blocks", "block_sparse.kv_indices",
                                            "block_sparse.full_kv_num_blocks", "block_sparse.full_kv_indices"};
    static const char* const q_names[4] = {"block_sparse.q_num_blocks", "block_sparse.q_indices",
                                           "block_sparse.full_q_num_blocks", "block_sparse.full_q_indices"};
    s.kv = lists_of(bs->kv_num_blocks, bs->kv_indices, bs->full_kv_num_blocks, bs->full_kv_indices, kv_names, p,
                    s.nqb, s.nkb);
    // The grid the lists span: B' x H' (broadcast dims count once).
    auto extent = [](const TensorView& a, const TensorView& b, int d) {
      return std::max<std::int64_t>(a.shape[d], b.present() ? b.shape[d] : 1);
    };
    const std::int64_t nb = extent(bs->kv_num_blocks, bs->full_kv_num_blocks, 0);
    const std::int64_t nh = extent(bs->kv_num_blocks, bs->full_kv_num_blocks, 1);
    if (host) check_contents(s.kv, kv_names, nb, nh, s.nqb, s.nkb);
    if (bs->q_num_blocks.present() || bs->q_indices.present()) {
      s.q = lists_of(bs->q_num_blocks, bs->q_indices, bs->full_q_num_blocks, bs->full_q_indices, q_names, p, s.nkb,
                     s.nqb);
      FLATATTN_REQUIRE(s.kv.full_num.present() == s.q.full_num.present(), "block_sparse.full_q_num_blocks",
                       s.q.full_num.present() ? "given" : "absent", "given exactly when full_kv_num_blocks is",
                       "pass the full lists in both directions or in neither");
      if (host) {
        check_contents(s.q, q_names, nb, nh, s.nkb, s.nqb);
        check_transpose(s.kv, s.q, nb, nh, p);
      }
    } else if (host) {
      storage->q = transpose_lists(s.kv, nb, nh, s.nqb, s.nkb);
    } else if (backward) {
      // CUDA: the transpose is derived on the device (src/cuda/sparse_derive.h), full lists iff full_kv ones.
      s.derive_q = true, s.list_b = nb, s.list_h = nh;
    }
    if (bs->mask_bits.present() || bs->mask_block_offsets.present()) {
      const TensorView& mb = bs->mask_bits;
      s.words = static_cast<int>((bkv + 31) / 32);
      const std::string layout = "(P, block_q = " + str(bq) + ", ceil(block_kv / 32) = " + str(s.words) + ")";
      int_view(mb, "block_sparse.mask_bits", p, {-1, bq, s.words}, {0, 0, 0}, layout.c_str());
      FLATATTN_REQUIRE(mb.numel() == 0 || (mb.stride[1] == s.words && (mb.shape[0] <= 1 || mb.stride[0] == bq * s.words)),
                       "block_sparse.mask_bits", "strides not row-major", "must be contiguous " + layout,
                       "pass a contiguous tensor");
      const std::string ol = "(B', H', " + str(s.nqb) + ")";
      s.bit_offsets = int_view(bs->mask_block_offsets, "block_sparse.mask_block_offsets", p, {-2, -2, s.nqb},
                               {p.batch, p.hq}, ol.c_str());
      s.bits = static_cast<const std::int32_t*>(mb.data);
      s.bit_blocks = mb.shape[0];
      s.rule = SparseRule::bits;
      if (host)
        for (std::int64_t b = 0; b < nb; ++b)
          for (std::int64_t h = 0; h < nh; ++h)
            for (std::int64_t r = 0; r < s.nqb; ++r) {
              const std::int64_t off = s.bit_offsets.at(b, h, r), c = s.kv.partial_count(b, h, r);
              FLATATTN_REQUIRE(c == 0 || (off >= 0 && off + c <= mb.shape[0]), "block_sparse.mask_block_offsets",
                               index_str({b, h, r}) + " = " + str(off) + " with " + str(c) + " partial blocks",
                               "the row's bit-blocks [off, off + count) must lie in mask_bits' P = " +
                                   str(mb.shape[0]),
                               "give each row the offset of its first partial block's bits");
            }
    }
  } else {
    // Local + global alone: the lists come from the window and the positions (CUDA: on the device, the
    // backward's q lists too).
    if (!host) {
      s.derive_kv = true, s.derive_q = backward, s.list_b = p.batch, s.list_h = 1;
      p.sparse_storage = storage;
      return;
    }
    std::vector<SeqLengths> lengths(static_cast<std::size_t>(p.batch));
    for (std::int64_t b = 0; b < p.batch; ++b) {
      const SeqSpan sp = seq_span(p, b);
      lengths[b] = {sp.nq, sp.nk};
    }
    storage->kv = local_global_lists(s, p.mask, lengths);
    s.kv = storage->kv.view();
    storage->q = transpose_lists(s.kv, p.batch, 1, s.nqb, s.nkb);
  }
  if (!s.q.num.present() && host) s.q = storage->q.view();
  p.sparse_storage = storage;
}

}  // namespace flatattn
