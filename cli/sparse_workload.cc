#include "cli/sparse_workload.h"

#include <algorithm>
#include <cstdlib>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/flags.h"
#include "src/check/sparse_case.h"
#include "src/core/sparse.h"
#include "src/core/sparse_lists.h"

namespace flatattn::cli {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

const std::int32_t* i32(const check::HostTensor& t) { return reinterpret_cast<const std::int32_t*>(t.storage.data()); }
std::int32_t* i32(check::HostTensor& t) { return reinterpret_cast<std::int32_t*>(t.storage.data()); }

/// The call's band as the kernels read it.
MaskSpec mask_of(const Workload& w) { return mask_spec(w.options()); }

/// The SparseSpec of w's element rule over `globals` (which must outlive it), lists not filled.
SparseSpec spec_of(const Workload& w, const std::vector<std::int32_t>& globals) {
  SparseSpec s;
  s.on = true;
  s.block_q = static_cast<int>(w.block_q);
  s.block_kv = static_cast<int>(w.block_kv);
  s.nqb = ceil_div(w.nq, w.block_q);
  s.nkb = ceil_div(w.nk, w.block_kv);
  s.rule = w.globals > 0 ? SparseRule::local_global : SparseRule::band;
  s.globals.data = globals.data();
  s.globals.stride[3] = 1;
  s.globals.width = static_cast<std::int64_t>(globals.size());
  s.causal = w.causal;
  return s;
}

/// The lists of w as one (1, 1, NQB, width) HostLists: the library's derivation without --density, else t's.
HostLists lists_of(const Workload& w, const check::CaseTensors& t, const std::vector<std::int32_t>& globals) {
  const SparseSpec s = spec_of(w, globals);
  if (t.c.sparse.derive) return local_global_lists(s, mask_of(w), {SeqLengths{w.nq, w.nk}});
  HostLists l;
  l.rows = s.nqb;
  l.width = t.kv_idx.shape.back();
  const auto take = [](const check::HostTensor& x) {
    const std::int32_t* p = i32(x);
    return std::vector<std::int32_t>(p, p + x.storage.size() / sizeof(std::int32_t));
  };
  l.num = take(t.kv_num), l.idx = take(t.kv_idx), l.full_num = take(t.fkv_num), l.full_idx = take(t.fkv_idx);
  return l;
}

/// BigBird: t's random blocks (all full) plus the local + global blocks the library derives (full where
/// it says full, partial elsewhere), per row of blocks, ascending.
void add_local_global_blocks(const Workload& w, check::CaseTensors& t) {
  const std::vector<std::int32_t>& g = t.c.sparse.globals;
  const HostLists d = local_global_lists(spec_of(w, g), mask_of(w), {SeqLengths{w.nq, w.nk}});
  const std::int64_t width = t.kv_idx.shape.back();
  for (std::int64_t r = 0; r < d.rows; ++r) {
    std::vector<std::int32_t> full(i32(t.fkv_idx) + r * width, i32(t.fkv_idx) + r * width + i32(t.fkv_num)[r]);
    full.insert(full.end(), d.full_idx.begin() + r * d.width, d.full_idx.begin() + r * d.width + d.full_num[r]);
    std::sort(full.begin(), full.end());
    full.erase(std::unique(full.begin(), full.end()), full.end());
    std::vector<std::int32_t> part;
    for (int s = 0; s < d.num[r]; ++s) {
      const std::int32_t c = d.idx[r * d.width + s];
      if (!std::binary_search(full.begin(), full.end(), c)) part.push_back(c);
    }
    std::copy(full.begin(), full.end(), i32(t.fkv_idx) + r * width);
    std::copy(part.begin(), part.end(), i32(t.kv_idx) + r * width);
    i32(t.fkv_num)[r] = static_cast<std::int32_t>(full.size());
    i32(t.kv_num)[r] = static_cast<std::int32_t>(part.size());
  }
}

}  // namespace

void add_sparse_flags(CLI::App& app, WorkloadFlags& f) {
  app.add_option("--density", f.density,
                 "block-sparse attention: each --block Q,KV block of the scores listed at random with probability P "
                 "in (0, 1] (lists from --seed; the --causal/--window band still applies inside a block); FLOPs and "
                 "GFLOP/s count only the visible pairs of the visited blocks; with --global: BigBird (random blocks "
                 "full, --no-causal)")
      ->check(density_validator());
  app.add_option("--block", f.block, "--density: rows, keys per block Q[,KV] [default: 128,128; CUDA: multiples of the kernel tile]")
      ->delimiter(',')
      ->expected(1, 2)
      ->check(int_in(1, 1 << 20));
  app.add_option("--global", f.global,
                 "local + global attention (Longformer): G global positions spread evenly over each sequence "
                 "(floor(g N / G)), the --window L,R band as the local attention; the library derives the block lists")
      ->check(int_in(1, 1 << 30));
}

CLI::Validator density_validator() {
  return CLI::Validator(
      [](std::string& v) {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        return !v.empty() && end == v.c_str() + v.size() && x > 0 && x <= 1
                   ? std::string()
                   : fmt::format("'{}' is not allowed; allowed: a share P with 0 < P <= 1 (e.g. 0.25)", v);
      },
      "P in (0,1]");
}

void resolve_sparse(const WorkloadFlags& f, Workload& w) {
  w.density = f.density;
  if (!f.block.empty()) {
    if (f.density <= 0)
      throw UsageError("--block", fmt::format("{} without --density", fmt::join(f.block, ",")),
                       "--block with --density P (the block size of the random lists)");
    w.block_q = f.block[0];
    w.block_kv = f.block.size() > 1 ? f.block[1] : f.block[0];
  }
  w.globals = f.global;
  check_sparse(w);
}

void check_global_count(std::int64_t g, std::int64_t nq, std::int64_t nk) {
  if (g > 0 && g > std::min(nq, nk))
    throw UsageError("--global", fmt::format("{} positions in a sequence of Nq = {}, Nk = {}", g, nq, nk),
                     fmt::format("1 .. min(Nq, Nk) = {} (positions are distinct)", std::min(nq, nk)));
}

double oracle_flops_per_sequence(const Workload& w) {
  return 4.0 * static_cast<double>(w.hq * w.d) * static_cast<double>(w.nq) * static_cast<double>(w.nk);
}

void use_mask(check::CaseTensors& c, const check::CaseTensors& mask) {
  for (auto [dst, src] : {std::pair{&c.kv_num, &mask.kv_num}, {&c.kv_idx, &mask.kv_idx}, {&c.fkv_num, &mask.fkv_num},
                          {&c.fkv_idx, &mask.fkv_idx}, {&c.globals, &mask.globals}})
    *dst = *src;
}

std::vector<std::int32_t> global_positions(std::int64_t g, std::int64_t n) {
  std::vector<std::int32_t> p(static_cast<std::size_t>(std::max<std::int64_t>(g, 0)));
  for (std::int64_t x = 0; x < g; ++x) p[static_cast<std::size_t>(x)] = static_cast<std::int32_t>(x * n / g);
  return p;
}

check::Case sparse_case(const Workload& w, std::int64_t batch) {
  check::Case c;
  c.batch = batch > 0 ? batch : w.batch;
  c.nq = w.nq, c.nk = w.nk, c.hq = w.hq, c.hkv = w.hkv, c.d = w.d;
  c.dtype = w.dtype;
  c.options = w.options();
  c.sinks = w.sinks;
  check::SparseCase& s = c.sparse;
  if (!w.sparse()) return c;
  s.per_head = false;  // one mask for every sequence and head: B' = H' = 1
  s.give_q = false;    // the backward's q lists: the library's transpose
  if (w.globals > 0) {
    s.rule = check::SparseCase::Rule::local_global;
    s.globals = global_positions(w.globals, std::min(w.nq, w.nk));
  }
  if (w.density > 0) {
    s.block_q = static_cast<int>(w.block_q), s.block_kv = static_cast<int>(w.block_kv);
    s.pattern = check::SparseCase::Pattern::random;
    s.density = w.density;
    s.full_share = w.globals > 0 ? 1.0 : 0.0;  // BigBird's random blocks are full; alone they keep the band
  } else {
    s.derive = true;
  }
  return c;
}

check::CaseTensors sparse_lists(const Workload& w) {
  check::CaseTensors t;
  t.c = sparse_case(w);
  check::make_sparse(t, w.seed ^ 7);  // make_case's seed of the lists
  if (w.density > 0 && w.globals > 0) add_local_global_blocks(w, t);
  return t;
}

SparseStats sparse_stats(const Workload& w) {
  SparseStats st;
  if (!w.sparse()) {
    const double pairs = forward_flops(1, w.nq, w.nk, 1, 1, w.options()) / 4.0;
    st.blocks_total = st.blocks_visited = 1;
    st.visible_pairs = pairs;
    st.block_pairs = static_cast<double>(w.nq) * static_cast<double>(w.nk);
    return st;
  }
  const check::CaseTensors t = sparse_lists(w);
  const std::vector<std::int32_t>& g = t.c.sparse.globals;
  const SparseSpec s = spec_of(w, g);
  const MaskSpec m = mask_of(w);
  const HostLists l = lists_of(w, t, g);
  const std::int64_t bq = s.block_q, bkv = s.block_kv;
  st.blocks_total = s.nqb * s.nkb;
  for (std::int64_t r = 0; r < l.rows; ++r) {
    const std::int64_t i0 = r * bq, i1 = std::min(w.nq, i0 + bq);
    for (int full = 0; full < 2; ++full) {
      const int count = full ? l.full_num[r] : l.num[r];
      for (int x = 0; x < count; ++x) {
        const std::int64_t c = full ? l.full_idx[r * l.width + x] : l.idx[r * l.width + x];
        const std::int64_t j0 = c * bkv, j1 = std::min(w.nk, j0 + bkv);
        const double pairs = static_cast<double>(std::max<std::int64_t>(0, i1 - i0) * std::max<std::int64_t>(0, j1 - j0));
        ++st.blocks_visited;
        st.block_pairs += pairs;
        if (full) {
          st.visible_pairs += pairs;
          continue;
        }
        for (std::int64_t i = i0; i < i1; ++i) {
          if (s.rule == SparseRule::band) {  // the band's interval inside the block
            const std::int64_t lo = std::max(j0, m.lo(i, w.nq, w.nk)), hi = std::min(j1 - 1, m.hi(i, w.nq, w.nk));
            st.visible_pairs += static_cast<double>(std::max<std::int64_t>(0, hi - lo + 1));
          } else {
            for (std::int64_t j = j0; j < j1; ++j) st.visible_pairs += local_global_visible(s, m, 0, i, j, w.nq, w.nk);
          }
        }
      }
    }
  }
  return st;
}

void check_sparse(const Workload& w) {
  if (w.density > 0 && w.globals > 0 && w.causal)
    throw UsageError("--density", fmt::format("{} with --global {} and --causal", w.density, w.globals),
                     "BigBird (--density with --global) lists its random blocks as full, visible beyond the "
                     "diagonal: add --no-causal, or drop --density (Longformer) or --global");
  check_global_count(w.globals, w.nq, w.nk);
}

std::string sparse_str(const Workload& w) {
  std::string s;
  if (w.density > 0) s += fmt::format(" density={} block={}x{}", w.density, w.block_q, w.block_kv);
  if (w.globals > 0) s += fmt::format(" global={}", w.globals);
  return s;
}

namespace {

constexpr const char* kFlopsCounted =
    "FLOPs and GFLOP/s count only the visible (row, key) pairs of the visited blocks, 4 D each (the dense count's "
    "rule, forward_flops); blocks not in the lists cost nothing and are not counted";

std::string mask_str(const Workload& w) {
  std::string s;
  if (w.density > 0)
    s = fmt::format("random {}x{} block lists at density {}{}", w.block_q, w.block_kv, w.density,
                    w.globals > 0 ? " (full blocks)" : " (the band decides inside a block)");
  if (w.globals > 0) {
    const std::vector<std::int32_t> g = global_positions(w.globals, std::min(w.nq, w.nk));
    const std::size_t shown = std::min<std::size_t>(g.size(), 6);
    std::string pos = fmt::format("{}", fmt::join(g.begin(), g.begin() + static_cast<std::ptrdiff_t>(shown), ", "));
    if (shown < g.size()) pos += ", ...";
    s += fmt::format("{}local + global: window ({},{}), {} global positions ({}){}", s.empty() ? "" : " + ",
                     w.window.left, w.causal ? 0 : w.window.right, w.globals, pos,
                     w.density > 0 ? "" : ", lists derived by the library (128x128)");
  }
  return s;
}

}  // namespace

std::string sparse_report(const Workload& w, const SparseStats& st, bool with_flops) {
  return fmt::format(
      "sparse mask: {}, from seed {}, the same for every sequence and head\n"
      "visited blocks: {} of {} (visited fraction {:.4f}); visible pairs {:.6g} of {:.6g} in the visited blocks, "
      "per sequence and head\n{}",
      mask_str(w), w.seed, st.blocks_visited, st.blocks_total, st.visited_fraction(), st.visible_pairs, st.block_pairs,
      with_flops ? fmt::format("{}\n", kFlopsCounted) : std::string());
}

nlohmann::json sparse_json(const Workload& w, const SparseStats& st) {
  return {{"mask", mask_str(w)},
          {"seed", w.seed},
          {"blocks_total", st.blocks_total},
          {"blocks_visited", st.blocks_visited},
          {"visited_fraction", st.visited_fraction()},
          {"visible_pairs", st.visible_pairs},
          {"block_pairs", st.block_pairs},
          {"flops_counted", kFlopsCounted}};
}

}  // namespace flatattn::cli
