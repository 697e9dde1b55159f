#include "src/cuda/policy/heuristics.h"

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <tuple>
#include <vector>

#include "src/cuda/policy/ws_policy.h"
#include "src/cuda/policy/ws_tile.h"
#include "src/cuda/runtime.h"
#include "src/model/hardware.h"
#include "src/model/planner.h"

namespace flatattn::cuda {

bool flat_fits(Family f, int d, std::int64_t nk) {
  const FlatTileSize t = flat_tile(f, d);
  return t.cap_blocks > 0 && nk <= t.cap_n();
}

namespace {

/// The built flash and flat kernels of head dim d, described as the planner's data.
std::vector<model::KernelVariant> variants(Family f, int d) {
  std::vector<model::KernelVariant> v;
  const FlashTileSize fl = flash_tile(f, d);
  if (fl.block_m > 0) {
    model::KernelVariant k;
    k.name = "flash";
    k.dataflow = Dataflow::flash;
    k.block_m = fl.block_m;
    k.block_n = fl.block_n;
    k.warps = fl.warps;
    k.stages = fl.stages;
    k.head_dim = d;
    v.push_back(k);
  }
  const FlatTileSize ft = flat_tile(f, d);
  if (ft.cap_blocks > 0) {
    model::KernelVariant k;
    k.name = "flat";
    k.dataflow = Dataflow::flat;
    k.block_m = ft.block_m();
    k.block_n = ft.block_n;
    k.warps = ft.warps;
    k.stages = 1;
    k.cap_n = ft.cap_n();
    k.head_dim = d;
    v.push_back(k);
  }
  return v;
}

/// The warp-specialized forward of tile row ws (policy/ws_tile.h) as the planner's data: one CTA per tile, or the
/// persistent kernel (the same tile, pipeline and registers).
model::KernelVariant ws_variant(const WsTile& ws, int d, bool persistent) {
  model::KernelVariant b;
  b.name = persistent ? "sm90_ws_p" : "sm90_ws";
  b.dataflow = Dataflow::flash;
  b.block_m = ws.block_m;
  b.block_n = ws.block_n;
  b.warps = 4 * ws.consumers;
  b.producer_warps = kWsProducerWarps;
  b.cta_regs = ws_cta_regs(ws);
  b.stages = ws.stages;
  b.path = "sm90_ws";
  b.head_dim = d;
  b.persistent = persistent;
  return b;
}

/// The question asked of the planner: flash vs FLAT, the two sm90 Flash forwards, or the warp-specialized one's
/// persistent vs one-tile grid.
enum class Question : int { dataflow = 0, sm90_ws = 1, sm90_ws_persistent = 2 };

using Key = std::tuple<int, int, int, int, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, int,
                       bool, std::int64_t, std::int64_t>;

/// The planner's answers (the index of the chosen candidate). `choice` holds at most kMaxChoices shapes and is
/// cleared when full: a workload with ever new shapes (varlen batches: their longest lengths are part of the key)
/// must not grow the process without bound, and a clear costs each shape still in use one re-plan (< 1 ms). A
/// fixed bound with a clear keeps the hit path a plain map lookup (no LRU bookkeeping per call).
constexpr std::size_t kMaxChoices = 4096;

/// Shared by every host thread: lookups take the reader lock only (concurrent calls of known shapes do not
/// serialize); a new shape is planned outside any lock (the planner is pure) and inserted under the writer
/// lock. Two threads planning one new shape both insert the same answer.
struct Cache {
  std::shared_mutex mu;
  std::map<int, std::unique_ptr<model::Hardware>> hardware;  // per device index (bounded by the devices)
  std::map<Key, int> choice;                                 // at most kMaxChoices entries
};

Cache& cache() {
  static Cache c;
  return c;
}

model::AttnShape shape_of(const Workload& w) {
  model::AttnShape s;
  s.batch = w.batch;
  s.nq = w.nq;
  s.nk = w.nk;
  s.hq = w.hq;
  s.hkv = w.hkv;
  s.d = w.d;
  s.dtype = w.dtype;
  s.causal = w.mask.right == 0 && w.mask.left < 0;
  s.bottom_right = w.mask.bottom_right;
  s.window_left = w.mask.left;
  s.window_right = w.mask.right;
  return s;
}

/// dev's hardware description (data/model/hardware, with its SM count and shared memory), loaded once per device.
const model::Hardware& hardware_of(const DeviceInfo& dev) {
  Cache& c = cache();
  {
    std::shared_lock<std::shared_mutex> read(c.mu);  // the common case: loaded, no writer lock per decode step
    if (auto it = c.hardware.find(dev.index); it != c.hardware.end() && it->second) return *it->second;
  }
  std::unique_lock<std::shared_mutex> write(c.mu);
  auto& slot = c.hardware[dev.index];
  if (!slot)
    slot = std::make_unique<model::Hardware>(
        model::gpu_preset_for(dev.cc / 10, dev.cc % 10, dev.name, dev.sm_count, dev.smem_optin));
  return *slot;  // never replaced or freed: readable without the lock
}

/// The index in `candidates` of the planner's pick for (dev, f, w, q), from the cache or planned now.
template <class Candidates>
int planned(const DeviceInfo& dev, Family f, const Workload& w, Question q, Candidates&& candidates) {
  const Key key{static_cast<int>(q), dev.index, static_cast<int>(f), w.d, w.batch, w.hq, w.hkv, w.nq, w.nk,
                static_cast<int>(w.dtype), w.mask.bottom_right, w.mask.left, w.mask.right};
  Cache& c = cache();
  {
    std::shared_lock<std::shared_mutex> read(c.mu);
    if (auto it = c.choice.find(key); it != c.choice.end()) return it->second;
  }
  const model::Hardware* hw = &hardware_of(dev);
  const std::vector<model::KernelVariant> v = candidates();
  const model::Plan plan = model::plan(hw->gpu, shape_of(w), v);
  int pick = 0;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i].name == plan.chosen.variant.name) pick = static_cast<int>(i);
  std::unique_lock<std::shared_mutex> write(c.mu);
  if (c.choice.size() >= kMaxChoices) c.choice.clear();
  c.choice.emplace(key, pick);
  return pick;
}

}  // namespace

Dataflow choose_dataflow(const DeviceInfo& dev, Family f, const Workload& w) {
  if (!flat_fits(f, w.d, w.nk)) return Dataflow::flash;  // FLAT cannot hold the row: not a candidate
  const std::vector<model::KernelVariant> v = variants(f, w.d);
  return v[planned(dev, f, w, Question::dataflow, [&] { return v; })].dataflow;
}

bool choose_sm90_ws(const DeviceInfo& dev, const Workload& w) {
  const WsTile ws = ws_tile(w.d);
  // The kernel the call runs otherwise: the older sm90 one, or at a head dim it lacks (D = 256) the sm80 family's.
  const bool has_old = flash_tile(Family::sm90, w.d).block_m > 0;
  const FlashTileSize old = flash_tile(has_old ? Family::sm90 : Family::sm80, w.d);
  if (ws.block_n == 0 || old.block_m == 0 || w.batch == 0 || w.nq == 0 || w.nk == 0) return false;
  auto candidates = [&] {
    model::KernelVariant a;
    a.name = has_old ? "sm90" : "sm80";
    a.dataflow = Dataflow::flash;
    a.block_m = old.block_m;
    a.block_n = old.block_n;
    a.warps = old.warps;
    a.stages = old.stages;
    a.path = has_old ? "sm90" : "sm80";
    a.head_dim = w.d;
    return std::vector<model::KernelVariant>{a, ws_variant(ws, w.d, false)};
  };
  return planned(dev, Family::sm90, w, Question::sm90_ws, candidates) == 1;
}

bool choose_sm90_ws_persistent(const DeviceInfo& dev, const Workload& w) {
  const WsTile ws = ws_tile(w.d);
  if (ws.block_n == 0 || w.batch == 0 || w.nq == 0 || w.nk == 0) return false;
  auto candidates = [&] {
    return std::vector<model::KernelVariant>{ws_variant(ws, w.d, false), ws_variant(ws, w.d, true)};
  };
  return planned(dev, Family::sm90, w, Question::sm90_ws_persistent, candidates) == 1;
}

int choose_decode_splits(const DeviceInfo& dev, const model::DecodeShape& s) {
  return model::model_decode_splits(s, hardware_of(dev).gpu);
}

}  // namespace flatattn::cuda
