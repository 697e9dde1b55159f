#include "src/cpu/policy.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "src/cpu/amx/amx.h"
#include "src/cpu/forward_tile.h"
#include "src/cpu/gemm.h"

namespace flatattn::cpu {

namespace {

std::size_t read_l2_bytes() {
#ifdef _SC_LEVEL2_CACHE_SIZE
  const long s = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (s > 0) return static_cast<std::size_t>(s);
#endif
  std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index2/size");  // e.g. "2048K"
  std::string text;
  if (f >> text && !text.empty()) {
    std::size_t mult = 1;
    const char unit = text.back();
    if (unit == 'K' || unit == 'k') mult = std::size_t{1} << 10;
    if (unit == 'M' || unit == 'm') mult = std::size_t{1} << 20;
    try {
      const std::size_t v = std::stoull(text) * mult;
      if (v > 0) return v;
    } catch (...) {  // unreadable: use the default below
    }
  }
  return kDefaultL2Bytes;
}

/// The bf16 slabs' Flash rows per tile (kBf16StreamRows): row.flash_block_m, grown to kBf16StreamRows when one kv
/// head's packed bf16 K and V outgrow kBf16KvL2Share of L2 (each tile then streams them from L3, so the rows per
/// tile are the reuse of every K/V byte), as long as every thread keeps kMinTilesPerThread tiles.
std::int64_t bf16_flash_rows(const Problem& p, const ForwardPolicy& row, std::size_t l2_bytes) {
  const std::int64_t base = row.flash_block_m;
  const double kv = 2.0 * 2.0 * static_cast<double>(round_up(std::max<std::int64_t>(p.nk, 1), kPanel)) *
                    static_cast<double>(padded_d(p.d));
  if (kv <= kBf16KvL2Share * static_cast<double>(l2_bytes)) return base;
  const std::int64_t threads = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  std::int64_t bm = std::max<std::int64_t>(base, kBf16StreamRows / base * base);
  for (; bm > base; bm -= base) {
    const std::int64_t tiles = p.batch * p.hq * ((p.nq + bm - 1) / bm);
    if (tiles >= kMinTilesPerThread * threads) break;
  }
  return bm;
}

}  // namespace

std::size_t l2_cache_bytes() {
  static const std::size_t bytes = read_l2_bytes();
  return bytes;
}

const ForwardPolicy& forward_policy(std::int64_t d) {
  for (const ForwardPolicy& row : kForwardPolicy)
    if (d <= row.max_d) return row;
  return kForwardPolicy[std::size(kForwardPolicy) - 1];
}

int flat_rows(const Problem& p, std::size_t l2_bytes) {
  const ForwardPolicy& row = forward_policy(p.d);
  const std::int64_t dp = padded_d(p.d);
  const std::int64_t cols = round_up(std::max<std::int64_t>(p.nk, 1), kPanel) + kPanel;  // + misaligned start
  const double budget = kFlatL2Share * static_cast<double>(l2_bytes);
  const double per_row = 4.0 * static_cast<double>(cols + 2 * dp);  // logits + Q + O, fp32
  std::int64_t r = static_cast<std::int64_t>(budget / per_row) / kRowAlign * kRowAlign;
  r = std::min<std::int64_t>(r, row.flat_max_rows);
  r = std::min<std::int64_t>(r, round_up(std::max<std::int64_t>(p.nq, 1), kRowAlign));
  return static_cast<int>(std::max<std::int64_t>(r, kRowAlign));
}

ForwardPlan plan_forward(const Problem& p, Dataflow requested) {
  const ForwardPolicy& row = forward_policy(p.d);
  const MatmulPath path = forward_matmul(p);
  const bool slabs = path != MatmulPath::fp32 && bf16_slabs(p);  // the bf16 paths' row slabs (forward_bf16.cc)
  Dataflow d = requested;
  if (d == Dataflow::automatic && p.sparse.on) d = Dataflow::flash;  // Flash skips the unlisted blocks
  if (d == Dataflow::flat && p.sparse.on) return {Dataflow::flat, flat_rows(p, l2_cache_bytes()), 0};
  if (p.sparse.on) {  // block-sparse: one tile per query block, one step per key block (src/cpu/sparse_tile.h)
    const std::int64_t bm = round_up(std::min<std::int64_t>(p.sparse.block_q, 264), kRowAlign);
    const std::int64_t bn = round_up(std::min<std::int64_t>(p.sparse.block_kv, 512), kPanel);
    return {Dataflow::flash, static_cast<int>(bm), static_cast<int>(bn)};
  }
  if (d == Dataflow::automatic) {
    const std::size_t l2 = l2_cache_bytes();
    const double tile = 4.0 * kRowAlign * static_cast<double>(round_up(std::max<std::int64_t>(p.nk, 1), kPanel));
    d = (p.nk <= row.flat_max_nk && tile <= kFlatL2Share * static_cast<double>(l2)) ? Dataflow::flat : Dataflow::flash;
    // The bf16 slabs: Flash once a 32-row slab's logits outgrow their share of L2 (kBf16SlabL2Share), and
    // always without a mask (kBf16FlashUnmasked).
    const double slab = 4.0 * kAmxSlab * static_cast<double>(round_up(std::max<std::int64_t>(p.nk, 1), kPanel));
    const bool slab_big = slab > kBf16SlabL2Share * static_cast<double>(l2);
    if (d == Dataflow::flat && (slab_big || (kBf16FlashUnmasked && !p.mask.masked())) && slabs) d = Dataflow::flash;
  }
  if (d == Dataflow::flat) return {Dataflow::flat, flat_rows(p, l2_cache_bytes()), 0};
  const std::int64_t rows = slabs ? bf16_flash_rows(p, row, l2_cache_bytes()) : row.flash_block_m;
  const int bm = static_cast<int>(std::min<std::int64_t>(rows, round_up(std::max<std::int64_t>(p.nq, 1), kRowAlign)));
  return {Dataflow::flash, bm, slabs && path == MatmulPath::avx512bf16 ? row.dpbf16_block_n : row.flash_block_n};
}

BackwardPlan plan_backward(const Problem& p) {
  if (p.sparse.on) {  // block-sparse: tiles inside one query block, steps inside one key block
    const int bm = static_cast<int>(round_up(std::min<std::int64_t>(p.sparse.block_q, p.d > 128 ? 48 : 132), kRowAlign));
    const int bn = static_cast<int>(round_up(std::min<std::int64_t>(p.sparse.block_kv, p.d > 128 ? 128 : 256), kPanel));
    const int bkv = static_cast<int>(round_up(std::min<std::int64_t>(p.sparse.block_kv, p.d > 128 ? 96 : 192), kKeyAlignBwd));
    return {bm, bn, bkv};
  }
  if (p.d > 128) return {48, 128, 96};
  return {};
}

}  // namespace flatattn::cpu
