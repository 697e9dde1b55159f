#include "src/model/sparse_blocks.h"

#include <algorithm>
#include <vector>

namespace flatattn::model {

namespace {

/// Last key any row up to i may see under the local + global rule: the diagonal with causal, else Nk - 1.
std::int64_t global_cap(const AttnShape& s, const MaskSpec& m, std::int64_t i) {
  return s.causal ? std::min(s.nk - 1, m.diag(i, s.nq, s.nk)) : s.nk - 1;
}

/// Global positions in [a, b] (sorted list).
std::int64_t globals_in(const std::vector<std::int32_t>& g, std::int64_t a, std::int64_t b) {
  if (b < a) return 0;
  return std::upper_bound(g.begin(), g.end(), b) - std::lower_bound(g.begin(), g.end(), a);
}

double share(const AttnShape& s) { return s.density > 0 ? s.density : 1.0; }

}  // namespace

KeyBlocks key_blocks(const AttnShape& s, std::int64_t r0, std::int64_t r1, std::int64_t bn) {
  const MaskSpec m = s.mask();
  const std::int64_t lo = m.lo(r0, s.nq, s.nk), hi = m.hi(r1, s.nq, s.nk);
  KeyBlocks k;
  if (hi >= lo) {
    const std::int64_t kb0 = lo / bn, kb1 = hi / bn;
    k.visited = double(kb1 - kb0 + 1);
    // A block is full when every row of the query block sees every key of it and it is bn wide:
    // kb * bn >= lo(last row), (kb + 1) * bn - 1 <= hi(first row), (kb + 1) * bn <= nk.
    const std::int64_t full_lo = m.lo(r1, s.nq, s.nk), full_hi = m.hi(r0, s.nq, s.nk);
    const std::int64_t first_full = std::max(kb0, (full_lo + bn - 1) / bn);
    const std::int64_t last_full = std::min({kb1, (full_hi + 1) / bn - 1, s.nk / bn - 1});
    k.partial = k.visited - double(std::max<std::int64_t>(0, last_full - first_full + 1));
  }
  if (!s.globals.empty()) {
    const std::int64_t cap = global_cap(s, m, r1);
    if (cap >= 0) {
      double extra = 0;
      if (globals_in(s.globals, r0, r1) > 0) {  // a global row: every key block up to the cap
        extra = double(cap / bn + 1) - k.visited;  // the band's blocks lie inside [0, cap / bn]
      } else {  // the blocks of the global keys outside the band's range
        std::int64_t last = -1;
        for (std::int32_t g : s.globals) {
          const std::int64_t b = g / bn;
          if (b * bn > cap) break;  // as the library's lists: a block starting right of the cap stays out
          if (b != last && (hi < lo || b < lo / bn || b > hi / bn)) extra += 1;
          last = b;
        }
      }
      k.visited += extra;
      k.partial += extra;
    }
  }
  k.visited *= share(s);
  k.partial *= share(s);
  return k;
}

double visible_pairs(const AttnShape& s) {
  const MaskSpec m = s.mask();
  double pairs = 0;
  if (!m.masked() && s.globals.empty()) {
    pairs = double(s.nq) * double(s.nk);
  } else {
    for (std::int64_t i = 0; i < s.nq; ++i) {
      const std::int64_t lo = m.lo(i, s.nq, s.nk), hi = m.hi(i, s.nq, s.nk);
      const std::int64_t band = std::max<std::int64_t>(0, hi - lo + 1);
      std::int64_t n = band;
      if (!s.globals.empty()) {
        const std::int64_t cap = global_cap(s, m, i);
        if (cap < 0) n = band;  // nothing left of the diagonal: the band is empty too
        else if (std::binary_search(s.globals.begin(), s.globals.end(), static_cast<std::int32_t>(i)))
          n = cap + 1;  // a global row sees every key up to the cap (the band lies inside)
        else
          n = band + globals_in(s.globals, 0, cap) - (band > 0 ? globals_in(s.globals, lo, hi) : 0);
      }
      pairs += double(n);
    }
  }
  return pairs * share(s);
}

}  // namespace flatattn::model
