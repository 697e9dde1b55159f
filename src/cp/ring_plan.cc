// The hop cover of ring attention (ring_plan.h): python/flatattn/distributed/_blocks.py's rules in C++.
#include "src/cp/ring_plan.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace flatattn::cp {

namespace {

constexpr std::int64_t kInf = INT64_MAX / 4;  // an unbounded window side; sums of a few stay finite
bool unbounded(std::int64_t x) { return x >= kInf / 2 || x <= -kInf / 2; }

// None (skip) or the Block of one (query run, key run) pair; left/right: global window sides, kInf unbounded.
std::optional<Block> pair_block(const Segment& q, const Segment& k, std::int64_t left, std::int64_t right) {
  if (q.doc != k.doc) return std::nullopt;
  const std::int64_t n = q.length, m = k.length;
  const std::int64_t lo = q.global - k.global - left, hi = q.global - k.global + right;
  if (hi < -(n - 1) || lo > m - 1) return std::nullopt;
  if (lo <= -(n - 1) && hi >= m - 1) {
    Block b{q.local, q.local + n, k.local, k.local + m};
    b.row0 = q.global, b.col0 = k.global, b.doc = q.doc;
    return b;
  }
  const std::int64_t t = std::max<std::int64_t>(0, -hi);  // leading query rows with no visible key
  const std::int64_t s = std::max<std::int64_t>(0, lo);   // leading keys no query sees
  std::int64_t wl = s - t - lo, wr = hi - s + t;           // the band relative to the cut block's diagonal
  if (unbounded(wl)) wl = -1;
  if (unbounded(wr)) wr = -1;
  Block b{q.local + t, q.local + n, k.local + s, k.local + m};
  b.row0 = q.global + t, b.col0 = k.global + s, b.doc = q.doc;
  if (wl == -1 && wr == 0 && n - t == m - s) {
    b.causal = true;
  } else {
    b.window_left = wl;
    b.window_right = wr;
  }
  return b;
}

}  // namespace

std::vector<Segment> segments(SeqLayout layout, int rank, int world, std::int64_t n_local,
                              const std::vector<std::int64_t>& cu_seqlens) {
  std::vector<Segment> runs;
  if (layout == SeqLayout::contiguous) {
    runs = {Segment{rank * n_local, 0, n_local}};
  } else {
    const std::int64_t c = n_local / 2;
    runs = {Segment{rank * c, 0, c}, Segment{(2 * std::int64_t{world} - 1 - rank) * c, c, c}};
  }
  if (cu_seqlens.size() < 2) return runs;
  std::vector<Segment> out;
  for (const Segment& r : runs) {
    std::int64_t g = r.global;
    const std::int64_t end = r.global + r.length;
    while (g < end) {  // the document holding position g: the last start <= g (empty documents skipped)
      const auto it = std::upper_bound(cu_seqlens.begin(), cu_seqlens.end(), g);
      const std::int64_t doc = (it - cu_seqlens.begin()) - 1;
      const std::int64_t stop = std::min(end, it == cu_seqlens.end() ? end : *it);
      out.push_back(Segment{g, r.local + (g - r.global), stop - g, doc});
      g = stop;
    }
  }
  return out;
}

std::vector<Block> plan_hop(const std::vector<Segment>& q_segs, const std::vector<Segment>& k_segs, bool causal,
                            std::int64_t window_left, std::int64_t window_right, bool fuse) {
  const std::int64_t left = window_left < 0 ? kInf : window_left;
  const std::int64_t right = causal ? 0 : (window_right < 0 ? kInf : window_right);
  std::map<std::pair<int, int>, Block> live;  // ordered by (query run, key run), as the Python plan
  for (int a = 0; a < static_cast<int>(q_segs.size()); ++a)
    for (int b = 0; b < static_cast<int>(k_segs.size()); ++b)
      if (auto blk = pair_block(q_segs[a], k_segs[b], left, right)) live.emplace(std::make_pair(a, b), *blk);
  if (live.empty()) return {};
  if (!fuse) {
    std::vector<Block> out;
    for (const auto& [ab, blk] : live) out.push_back(blk);
    return out;
  }
  const bool one_doc = std::all_of(q_segs.begin(), q_segs.end(), [&](const Segment& x) { return x.doc == q_segs[0].doc; });
  if (q_segs == k_segs && one_doc && left == kInf && right == 0) {
    std::int64_t n = 0;
    for (const auto& s : q_segs) n += s.length;
    Block b{0, n, 0, n};
    b.causal = true;
    return {b};
  }
  std::set<int> rows, cols;
  bool unmasked = true;
  for (const auto& [ab, blk] : live) {
    rows.insert(ab.first);
    cols.insert(ab.second);
    unmasked = unmasked && !blk.causal && blk.window_left == -1 && blk.window_right == -1 &&
               blk.q1 - blk.q0 == q_segs[ab.first].length && blk.k1 - blk.k0 == k_segs[ab.second].length;
  }
  const bool rect = live.size() == rows.size() * cols.size();
  const bool adjacent = *rows.rbegin() - *rows.begin() + 1 == static_cast<int>(rows.size()) &&
                        *cols.rbegin() - *cols.begin() + 1 == static_cast<int>(cols.size());
  if (unmasked && rect && adjacent) {
    const Segment& qa = q_segs[*rows.begin()];
    const Segment& qb = q_segs[*rows.rbegin()];
    const Segment& ka = k_segs[*cols.begin()];
    const Segment& kb = k_segs[*cols.rbegin()];
    return {Block{qa.local, qb.local + qb.length, ka.local, kb.local + kb.length}};
  }
  std::vector<Block> out;
  for (const auto& [ab, blk] : live) out.push_back(blk);
  return out;
}

RingPlan plan_ring(SeqLayout layout, int world, std::int64_t n_local, bool causal, std::int64_t window_left,
                   std::int64_t window_right, const std::vector<std::int64_t>& cu_seqlens, bool fuse) {
  std::vector<std::vector<Segment>> segs;
  for (int r = 0; r < world; ++r) segs.push_back(segments(layout, r, world, n_local, cu_seqlens));
  RingPlan plan(world);
  int last = 0;
  for (int r = 0; r < world; ++r) {
    for (int t = 0; t < world; ++t) {
      plan[r].push_back(plan_hop(segs[r], segs[((r - t) % world + world) % world], causal, window_left,
                                 window_right, fuse));
      if (!plan[r].back().empty()) last = std::max(last, t);
    }
  }
  for (auto& row : plan) row.resize(last + 1);
  return plan;
}

}  // namespace flatattn::cp
