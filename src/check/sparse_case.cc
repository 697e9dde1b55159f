#include "src/check/sparse_case.h"

#include <algorithm>
#include <random>
#include <sstream>
#include <vector>

#include "src/core/validate.h"
#include "src/reference/parallel.h"
#include "src/reference/reference.h"

namespace flatattn::check {

namespace {

std::int32_t* i32(HostTensor& t) { return static_cast<std::int32_t*>(t.data()); }

/// The pattern's element predicate (top-left coordinates of a sequence of nq rows, nk keys).
bool pattern_visible(const SparseCase& s, std::int64_t i, std::int64_t j, std::int64_t nq, std::int64_t nk) {
  switch (s.pattern) {
    case SparseCase::Pattern::causal: return j <= i;
    case SparseCase::Pattern::sliding: return j <= i && i - j <= s.window;
    case SparseCase::Pattern::prefix_lm: return j <= i || j < s.window;
    case SparseCase::Pattern::document: {
      // Three documents: the first 3/10, the next 1/2, the rest (of the rows and of the keys alike).
      auto doc = [](std::int64_t x, std::int64_t n) { return x * 10 < n * 3 ? 0 : (x * 10 < n * 8 ? 1 : 2); };
      return doc(i, nq) == doc(j, nk);
    }
    case SparseCase::Pattern::random: return true;
  }
  return true;
}

}  // namespace

void make_sparse(CaseTensors& t, std::uint64_t seed) {
  const Case& c = t.c;
  const SparseCase& s = c.sparse;
  if (s.rule == SparseCase::Rule::local_global) {
    t.globals = HostTensor::make(DType::i32, {1, static_cast<std::int64_t>(s.globals.size())});
    for (std::size_t g = 0; g < s.globals.size(); ++g) i32(t.globals)[g] = s.globals[g];
  }
  if (s.derive) return;
  const std::int64_t bq = s.block_q, bkv = s.block_kv;
  const std::int64_t nqb = (c.nq + bq - 1) / bq, nkb = (c.nk + bkv - 1) / bkv;
  const std::int64_t nb = s.per_head ? c.batch : 1, nh = s.per_head ? c.hq : 1;
  const std::int64_t rows = nb * nh * nqb;
  const std::int64_t w = std::max<std::int64_t>(nkb, 1);
  t.kv_num = HostTensor::make(DType::i32, {nb, nh, nqb});
  t.kv_idx = HostTensor::make(DType::i32, {nb, nh, nqb, w});
  t.fkv_num = HostTensor::make(DType::i32, {nb, nh, nqb});
  t.fkv_idx = HostTensor::make(DType::i32, {nb, nh, nqb, w});
  t.bit_offsets = HostTensor::make(DType::i32, {nb, nh, nqb});
  const int words = static_cast<int>((bkv + 31) / 32);
  std::vector<std::int32_t> bits;  // (P, bq, words)
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t qb = r % nqb;
    i32(t.bit_offsets)[r] = static_cast<std::int32_t>(bits.size() / (bq * words));
    int np = 0, nf = 0;
    for (std::int64_t kb = 0; kb < nkb; ++kb) {
      int state = 0;  // 0 absent, 1 partial, 2 full
      std::vector<std::int32_t> blk(static_cast<std::size_t>(bq * words), 0);
      if (s.pattern == SparseCase::Pattern::random) {
        if (u(g) < s.density) state = u(g) < s.full_share ? 2 : 1;
        if (state == 1 && s.rule == SparseCase::Rule::bits)
          for (std::int64_t x = 0; x < bq * bkv; ++x)
            if (u(g) < s.bit_density) blk[(x / bkv) * words + (x % bkv) / 32] |= std::int32_t(1u << ((x % bkv) % 32));
      } else {  // the predicate over the block inside the sequence: none, some or all elements visible
        std::int64_t seen = 0, total = 0;
        for (std::int64_t i = qb * bq; i < std::min(c.nq, (qb + 1) * bq); ++i)
          for (std::int64_t j = kb * bkv; j < std::min(c.nk, (kb + 1) * bkv); ++j) {
            ++total;
            if (pattern_visible(s, i, j, c.nq, c.nk)) {
              ++seen;
              const std::int64_t ti = i - qb * bq, tj = j - kb * bkv;
              blk[ti * words + tj / 32] |= std::int32_t(1u << (tj % 32));
            }
          }
        state = seen == 0 ? 0 : (seen == total ? 2 : 1);
      }
      if (state == 2) i32(t.fkv_idx)[r * w + nf++] = static_cast<std::int32_t>(kb);
      if (state == 1) {
        i32(t.kv_idx)[r * w + np++] = static_cast<std::int32_t>(kb);
        bits.insert(bits.end(), blk.begin(), blk.end());
      }
    }
    i32(t.kv_num)[r] = np;
    i32(t.fkv_num)[r] = nf;
  }
  if (s.rule == SparseCase::Rule::bits) {
    const std::int64_t p = static_cast<std::int64_t>(bits.size()) / (bq * words);
    t.mask_bits = HostTensor::make(DType::i32, {p, bq, words});
    std::copy(bits.begin(), bits.end(), i32(t.mask_bits));
  }
  if (s.give_q) {  // the transpose, written here from the kv lists (the library checks it)
    const std::int64_t wq = std::max<std::int64_t>(nqb, 1);
    t.q_num = HostTensor::make(DType::i32, {nb, nh, nkb});
    t.q_idx = HostTensor::make(DType::i32, {nb, nh, nkb, wq});
    t.fq_num = HostTensor::make(DType::i32, {nb, nh, nkb});
    t.fq_idx = HostTensor::make(DType::i32, {nb, nh, nkb, wq});
    for (std::int64_t bh = 0; bh < nb * nh; ++bh)
      for (std::int64_t qb = 0; qb < nqb; ++qb) {
        const std::int64_t r = bh * nqb + qb;
        for (int full = 0; full < 2; ++full) {
          HostTensor& num = full ? t.fkv_num : t.kv_num;
          HostTensor& idx = full ? t.fkv_idx : t.kv_idx;
          HostTensor& qn = full ? t.fq_num : t.q_num;
          HostTensor& qi = full ? t.fq_idx : t.q_idx;
          for (int sl = 0; sl < i32(num)[r]; ++sl) {
            const std::int64_t kb = i32(idx)[r * w + sl];
            const std::int64_t col = bh * nkb + kb;
            i32(qi)[col * wq + i32(qn)[col]++] = static_cast<std::int32_t>(qb);
          }
        }
      }
  }
}

std::optional<BlockSparse> sparse_args(const CaseTensors& t, Device device) {
  return sparse_args(t, [device](const HostTensor& x) { return x.view(device); });
}

std::optional<LocalGlobal> local_global_args(const CaseTensors& t, Device device) {
  return local_global_args(t, [device](const HostTensor& x) { return x.view(device); });
}

std::vector<HostTensor*> sparse_tensors(CaseTensors& t) {
  const SparseCase& s = t.c.sparse;
  std::vector<HostTensor*> v;
  if (!s.on()) return v;
  if (s.rule == SparseCase::Rule::local_global) v.push_back(&t.globals);
  if (s.derive) return v;
  v.insert(v.end(), {&t.kv_num, &t.kv_idx, &t.fkv_num, &t.fkv_idx});
  if (s.give_q) v.insert(v.end(), {&t.q_num, &t.q_idx, &t.fq_num, &t.fq_idx});
  if (s.rule == SparseCase::Rule::bits) v.insert(v.end(), {&t.mask_bits, &t.bit_offsets});
  return v;
}

std::optional<BlockSparse> sparse_args(const CaseTensors& t, const ViewOf& view) {
  const SparseCase& s = t.c.sparse;
  if (!s.on() || s.derive) return std::nullopt;
  BlockSparse b;
  b.block_q = s.block_q, b.block_kv = s.block_kv;
  b.kv_num_blocks = view(t.kv_num);
  b.kv_indices = view(t.kv_idx);
  b.full_kv_num_blocks = view(t.fkv_num);
  b.full_kv_indices = view(t.fkv_idx);
  if (s.give_q) {
    b.q_num_blocks = view(t.q_num);
    b.q_indices = view(t.q_idx);
    b.full_q_num_blocks = view(t.fq_num);
    b.full_q_indices = view(t.fq_idx);
  }
  if (s.rule == SparseCase::Rule::bits) {
    b.mask_bits = view(t.mask_bits);
    b.mask_block_offsets = view(t.bit_offsets);
  }
  return b;
}

std::optional<LocalGlobal> local_global_args(const CaseTensors& t, const ViewOf& view) {
  if (!t.c.sparse.on() || t.c.sparse.rule != SparseCase::Rule::local_global) return std::nullopt;
  LocalGlobal lg;
  lg.global_positions = view(t.globals);
  return lg;
}

std::vector<std::vector<char>> sparse_element_masks(const CaseTensors& t) {
  std::vector<std::vector<char>> out;
  if (!t.c.sparse.on()) return out;
  Options o = t.c.options;
  o.return_lse = false;
  ForwardArgs a = t.forward_args();
  a.lse = {};
  const ValidatedForward v = validate_forward(a, o, Consumer::oracle);
  const std::int64_t hq = v.problem.hq;
  out.resize(static_cast<std::size_t>(v.problem.batch * hq));
  ref::parallel_tasks(v.problem.batch * hq, [&](std::int64_t i) {
    out[static_cast<std::size_t>(i)] = ref::sparse_element_mask(v.problem, i / hq, i % hq, seq_span(v.problem, i / hq));
  });
  return out;
}

std::string sparse_name(const SparseCase& s) {
  static const char* const patterns[] = {"random", "causal", "sliding", "prefix_lm", "document"};
  static const char* const rules[] = {"band", "bits", "local_global"};
  std::ostringstream o;
  o << "sparse(";
  if (s.derive) {
    o << "derived";
  } else {
    o << s.block_q << "x" << s.block_kv << " " << patterns[static_cast<int>(s.pattern)];
    if (s.pattern == SparseCase::Pattern::random) o << " density" << s.density << " full" << s.full_share;
  }
  o << " " << rules[static_cast<int>(s.rule)];
  if (!s.globals.empty()) o << " globals" << s.globals.size();
  if (!s.per_head) o << " broadcast";
  if (s.give_q) o << " q-lists";
  o << ")";
  return o.str();
}

}  // namespace flatattn::check
