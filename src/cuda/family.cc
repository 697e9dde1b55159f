// Family probes and selection, and the FLATATTN_CUDA_SM90 switch. See family.h.
#include "src/cuda/family.h"

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "flatattn/error.h"
#include "src/cuda/dispatch.h"
#include "src/cuda/launch_api.h"
#include "src/cuda/policy/ws_policy.h"
#include "src/cuda/registry.h"
#include "src/cuda/runtime.h"

namespace flatattn::cuda {

namespace {

constexpr int kMaxDevices = 64;  // device_info() refuses larger ordinals

bool usable(const DeviceInfo& dev, Family f) { return has_family(f) && probe(dev.index, f).err == 0; }

/// family_for without its cache (the probes it asks are cached themselves).
Family select_family(const DeviceInfo& dev, DType dt) {
  const bool small_smem = dev.cc == 86 || dev.cc == 89;
  if (dev.cc >= 80) {
    for (Family f : small_smem ? std::array{Family::sm86, Family::sm80} : std::array{Family::sm80, Family::sm86})
      if (usable(dev, f)) return f;
  }
  auto where = [&] {
    return "cuda:" + std::to_string(dev.index) + " (" + dev.name + ", sm_" + std::to_string(dev.cc) + ")";
  };
  if (dev.cc >= 75 && usable(dev, Family::sm75)) {
    if (dt == DType::bf16) {
      throw Error(Error::Kind::unsupported, "q.dtype", "bf16 on " + where(),
                  std::string("bf16 kernels are SASS only (") + FLATATTN_CUDA_FAMILIES_STR +
                      "); this device runs the compute_75 PTX family" +
                      (dev.cc >= 80 ? " because no SASS family loads here (CUDA_FORCE_PTX_JIT set, or an arch not built)"
                                    : " (Turing tensor cores have no bf16)"),
                  "use f16 on this device, or build FLATATTN_CUDA_ARCHS with its architecture");
    }
    return Family::sm75;
  }
  throw Error(Error::Kind::unsupported, "q.device", where(),
              std::string("no built kernel family runs on this GPU (") + FLATATTN_CUDA_FAMILIES_STR + ")",
              "rebuild with FLATATTN_CUDA_ARCHS including this GPU (sm_80 or newer) or FLATATTN_CUDA_PTX75=ON");
}

/// family_for's answers: 1 + the Family's value, or 0 before the first successful call.
std::array<std::atomic<int>, kMaxDevices * kDTypeCount> g_family{};

/// The FLATATTN_CUDA_SM90 cache: sm90_override_changed() bumps the generation; each device keeps
/// (generation << 1 | enabled) of its last reading, 0 before the first (generations start at 1).
std::atomic<std::uint64_t> g_sm90_generation{1};
std::array<std::atomic<std::uint64_t>, kMaxDevices> g_sm90{};

}  // namespace

const Probe& probe(int device, Family f) {
  static std::mutex mu;
  static std::map<std::pair<int, Family>, Probe> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({device, f});
  if (it == cache.end()) {
    Probe p;
    p.err = f == Family::sm80   ? probe_sm80(&p.ptx, &p.bin)
            : f == Family::sm86 ? probe_sm86(&p.ptx, &p.bin)
            : f == Family::sm90 ? probe_sm90(&p.ptx, &p.bin)
                                : probe_sm75(&p.ptx, &p.bin);
    cudaGetLastError();  // a failed probe must not linger as the next call's error
    it = cache.emplace(std::pair{device, f}, p).first;
  }
  return it->second;
}

Family family_for(const DeviceInfo& dev, DType dt) {
  std::atomic<int>& cached = g_family[static_cast<std::size_t>(dev.index) * kDTypeCount + static_cast<std::size_t>(dt)];
  const int known = cached.load(std::memory_order_acquire);
  if (known > 0) return static_cast<Family>(known - 1);
  const Family f = select_family(dev, dt);  // throws (and caches nothing) when no family serves it
  cached.store(1 + static_cast<int>(f), std::memory_order_release);
  return f;
}

bool sm90_enabled(const DeviceInfo& dev) {
  if (dev.cc != 90) return false;
  const std::uint64_t gen = g_sm90_generation.load(std::memory_order_acquire);
  std::atomic<std::uint64_t>& cached = g_sm90[static_cast<std::size_t>(dev.index)];
  const std::uint64_t known = cached.load(std::memory_order_acquire);
  if (known >> 1 == gen) return (known & 1) != 0;
  // A racing sm90_override_changed() at worst stores an old generation: the next call reads again.
  const char* env = std::getenv("FLATATTN_CUDA_SM90");
  const bool off = env != nullptr && env[0] == '0' && env[1] == '\0';
  const bool on = !off && usable(dev, Family::sm90);
  cached.store(gen << 1 | static_cast<std::uint64_t>(on), std::memory_order_release);
  return on;
}

int sm90_ws_requested() {
  // generation << 3 | (mode + 1); 0 before the first reading
  static std::atomic<std::uint64_t> cached{0};
  const std::uint64_t gen = g_sm90_generation.load(std::memory_order_acquire);
  const std::uint64_t known = cached.load(std::memory_order_acquire);
  if (known >> 3 == gen) return static_cast<int>(known & 7) - 1;  // generations start at 1: 0 is never current
  const char* env = std::getenv("FLATATTN_CUDA_SM90_WS");
  int mode = 0;  // stored as mode + 1: 0 auto, 1 off, 2..4 schedules 1..3
  if (env == nullptr || env[0] == '\0' || std::string_view(env) == "auto") {
    mode = kWsModeAuto;
  } else if (env[0] >= '1' && env[0] <= '3' && env[1] == '\0') {
    mode = env[0] - '0';
  }
  cached.store(gen << 3 | static_cast<std::uint64_t>(mode + 1), std::memory_order_release);
  return mode;
}

int sm90_ws_persistent() {
  // generation << 3 | (mode + 1); 0 before the first reading
  static std::atomic<std::uint64_t> cached{0};
  const std::uint64_t gen = g_sm90_generation.load(std::memory_order_acquire);
  const std::uint64_t known = cached.load(std::memory_order_acquire);
  if (known >> 3 == gen) return static_cast<int>(known & 7) - 1;
  const char* env = std::getenv("FLATATTN_CUDA_SM90_WS_PERSISTENT");
  int mode = kWsPersistentAuto;
  if (env == nullptr || env[0] == '\0' || std::string_view(env) == "auto") {
    mode = kWsPersistentAuto;
  } else if (std::string_view(env) == "1" || std::string_view(env) == "0") {
    mode = env[0] == '1' ? kWsPersistentOn : kWsPersistentOff;
  } else if (std::string_view(env) == "rule") {
    mode = kWsPersistentByRule;
  } else if (std::string_view(env) == "model") {
    mode = kWsPersistentByModel;
  } else {
    throw Error(Error::Kind::invalid_argument, "FLATATTN_CUDA_SM90_WS_PERSISTENT", env, "0, 1, rule, model, auto or unset",
                "set it to 1 (the persistent warp-specialized forward), 0 (one CTA per tile), rule (the hand rule's "
                "thresholds per call, src/cuda/policy/ws_policy.h kWsPersistentRule), model (the cost model's choice "
                "per call) or unset it (the default chooser, kWsPersistentDefault: the hand rule)");
  }
  cached.store(gen << 3 | static_cast<std::uint64_t>(mode + 1), std::memory_order_release);
  return mode;
}

namespace {
std::atomic<unsigned long long> g_ws_launches{0};
}  // namespace

unsigned long long sm90_ws_launches() { return g_ws_launches.load(std::memory_order_relaxed); }
void sm90_ws_count_launch() { g_ws_launches.fetch_add(1, std::memory_order_relaxed); }

void sm90_override_changed() { g_sm90_generation.fetch_add(1, std::memory_order_acq_rel); }

PathInfo path_info(int device, DType dtype) {
  DeviceGuard guard(device);
  const DeviceInfo& dev = device_info(device);
  PathInfo info;
  info.family = family_for(dev, dtype);
  const Probe& pr = probe(device, info.family);
  info.ptx_version = pr.ptx;
  info.binary_version = pr.bin;
  info.sm90_flash = sm90_enabled(dev);
  return info;
}

}  // namespace flatattn::cuda
