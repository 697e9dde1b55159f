// The CUDA backend's entry points: CUDA-specific checks, the code-path family for the device, the
// Flash/FLAT choice, and the registry of built instances (key: family, dataflow, dtype, head dim,
// variant -> launcher). A request no built instance serves is an error listing what was built.
#include "src/cuda/dispatch.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>

#include "src/core/backend.h"
#include "src/core/validate.h"
#include "src/cuda/launch_api.h"
#include "src/cuda/policy/heuristics.h"
#include "src/cuda/runtime.h"

namespace flatattn::cuda {

namespace {

struct Instance {
  Family family;
  Dataflow dataflow;
  DType dtype;
  int d;
  VariantId variant;
  LaunchInfo (*launch)(const LaunchArgs&);
};

// The generated lists (CMake writes them from src/cuda/inst/manifest.cmake and the build options).
constexpr Instance kInstances[] = {
#define FLATATTN_INSTANCE(F, DF, DT, D, VAR) \
  {Family::F, Dataflow::DF, DType::DT, D, VariantId::VAR, &launch_fwd<Family::F, Dataflow::DF, DType::DT, D, VariantId::VAR>},
#define FLATATTN_BWD_INSTANCE(F, DT, D, VAR)
#include "flatattn_cuda_instances.inc"
#undef FLATATTN_BWD_INSTANCE
#undef FLATATTN_INSTANCE
    {Family::sm80, Dataflow::automatic, DType::f32, 0, VariantId::plain, nullptr},  // end marker
};

struct BwdInstance {
  Family family;
  DType dtype;
  int d;
  VariantId variant;
  LaunchInfo (*launch)(const BwdLaunchArgs&);
};

constexpr BwdInstance kBwdInstances[] = {
#define FLATATTN_INSTANCE(F, DF, DT, D, VAR)
#define FLATATTN_BWD_INSTANCE(F, DT, D, VAR) \
  {Family::F, DType::DT, D, VariantId::VAR, &launch_bwd<Family::F, DType::DT, D, VariantId::VAR>},
#include "flatattn_cuda_instances.inc"
#undef FLATATTN_BWD_INSTANCE
#undef FLATATTN_INSTANCE
    {Family::sm80, DType::f32, 0, VariantId::plain, nullptr},  // end marker
};

/// The instance-name suffix of a variant ("" for plain, else "_" and its name), as tools/gen_instances.py names files.
std::string variant_suffix(VariantId v) { return v == VariantId::plain ? "" : std::string("_") + variant_name(v); }

std::string instance_name(const Instance& in) {
  return std::string(name(in.dataflow)) + "_" + name(in.family) + "_" + std::string(name(in.dtype)) + "_d" +
         std::to_string(in.d) + variant_suffix(in.variant);
}

bool has_family(Family f) {
  for (const Instance& in : kInstances)
    if (in.launch != nullptr && in.family == f) return true;
  for (const BwdInstance& in : kBwdInstances)
    if (in.launch != nullptr && in.family == f) return true;
  return false;
}

/// Smallest built head dim >= d for the key, or nullptr.
const Instance* find(Family f, Dataflow df, DType dt, VariantId variant, std::int64_t d) {
  const Instance* best = nullptr;
  for (const Instance& in : kInstances) {
    if (in.launch == nullptr || in.family != f || in.dataflow != df || in.dtype != dt || in.variant != variant) continue;
    if (in.d >= d && (best == nullptr || in.d < best->d)) best = &in;
  }
  return best;
}

/// Smallest built backward head dim >= d for the key, or nullptr.
const BwdInstance* find_bwd(Family f, DType dt, VariantId variant, std::int64_t d) {
  const BwdInstance* best = nullptr;
  for (const BwdInstance& in : kBwdInstances) {
    if (in.launch == nullptr || in.family != f || in.dtype != dt || in.variant != variant) continue;
    if (in.d >= d && (best == nullptr || in.d < best->d)) best = &in;
  }
  return best;
}

[[noreturn]] void not_built(Family f, Dataflow df, DType dt, VariantId variant, std::int64_t d) {
  throw Error(Error::Kind::unsupported, "q",
              std::string(name(df)) + " kernel for " + std::string(name(dt)) + ", D = " + std::to_string(d) +
                  (variant == VariantId::plain ? "" : std::string(", ") + variant_name(variant)) + " on the " + name(f) + " family",
              "no built instance serves it; built: " + built_instances(),
              "rebuild with FLATATTN_HDIMS / FLATATTN_DTYPES covering it (and without FLATATTN_CUDA_SUBSET)");
}

/// Whether each family's code loads on a device (a probe kernel built with the family's targets), with
/// the PTX and SASS versions the driver picked.
struct Probe {
  int err = -1, ptx = 0, bin = 0;
};

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

bool usable(const DeviceInfo& dev, Family f) { return has_family(f) && probe(dev.index, f).err == 0; }

/// The base family that serves `dt` on `dev` (the sm90 family, where enabled, then takes over the Flash
/// forward of its head dims: upgrade_flash): sm86 first on sm_86/sm_89 (their 99 KB shared memory), then
/// sm80 (its SASS also runs on sm_8x), then the compute_75 PTX (Turing; newer GPUs through the JIT).
Family family_for(const DeviceInfo& dev, DType dt) {
  const bool small_smem = dev.cc == 86 || dev.cc == 89;
  if (dev.cc >= 80) {
    for (Family f : small_smem ? std::array{Family::sm86, Family::sm80} : std::array{Family::sm80, Family::sm86})
      if (usable(dev, f)) return f;
  }
  const std::string where = "cuda:" + std::to_string(dev.index) + " (" + dev.name + ", sm_" + std::to_string(dev.cc) + ")";
  if (dev.cc >= 75 && usable(dev, Family::sm75)) {
    if (dt == DType::bf16) {
      throw Error(Error::Kind::unsupported, "q.dtype", "bf16 on " + where,
                  std::string("bf16 kernels are SASS only (") + FLATATTN_CUDA_FAMILIES_STR +
                      "); this device runs the compute_75 PTX family" +
                      (dev.cc >= 80 ? " because no SASS family loads here (CUDA_FORCE_PTX_JIT set, or an arch not built)"
                                    : " (Turing tensor cores have no bf16)"),
                  "use f16 on this device, or build FLATATTN_CUDA_ARCHS with its architecture");
    }
    return Family::sm75;
  }
  throw Error(Error::Kind::unsupported, "q.device", where,
              std::string("no built kernel family runs on this GPU (") + FLATATTN_CUDA_FAMILIES_STR + ")",
              "rebuild with FLATATTN_CUDA_ARCHS including this GPU (sm_80 or newer) or FLATATTN_CUDA_PTX75=ON");
}

/// Whether the sm90 family (wgmma Flash forward and backward, sm_90a SASS) runs on `dev`: an sm_90 GPU,
/// the family built and loadable, and not switched off with FLATATTN_CUDA_SM90=0 (read at every call,
/// for comparisons with the sm80 family on one GPU and for tests; any other value or unset: on).
bool sm90_enabled(const DeviceInfo& dev) {
  if (dev.cc != 90) return false;
  const char* env = std::getenv("FLATATTN_CUDA_SM90");
  if (env != nullptr && std::string(env) == "0") return false;
  return usable(dev, Family::sm90);
}

/// The Flash forward instance whose base-family instance is `flash`: the sm90 family's when it is enabled
/// on `dev` and has an instance of the same kernel head dim (so padding never grows), else `flash` itself.
const Instance* upgrade_flash(const DeviceInfo& dev, const Instance* flash) {
  if (flash == nullptr || !sm90_enabled(dev)) return flash;
  const Instance* h = find(Family::sm90, Dataflow::flash, flash->dtype, flash->variant, flash->d);
  return h != nullptr && h->d == flash->d ? h : flash;
}

/// The backward instance that serves `base` (the base family's) on `dev`: the sm90 family's (wgmma,
/// sm90/bwd_kernel.cuh) when it is enabled and has the same kernel head dim, else `base` itself.
const BwdInstance* upgrade_bwd(const DeviceInfo& dev, const BwdInstance* base) {
  if (base == nullptr || !sm90_enabled(dev)) return base;
  const BwdInstance* h = find_bwd(Family::sm90, base->dtype, base->variant, base->d);
  return h != nullptr && h->d == base->d ? h : base;
}

/// A tensor the kernels address in 16-byte chunks of rows.
struct View {
  const char* name;
  const void* data;
  RowStrides s;
  std::int64_t rows, heads;
};

/// Checks the kernels add to src/core/validate: 16-byte rows, int lengths, D <= 256.
void check_cuda_args(const Problem& p, std::initializer_list<View> views) {
  require(p.d % 8 == 0, "q", "head dim D = " + std::to_string(p.d),
          "on CUDA D must be a multiple of 8 (rows move in 16-byte chunks)",
          "zero-pad q, k and v to a multiple of 8 (the result is unchanged) and slice the output");
  require(p.d <= 256, "q", "head dim D = " + std::to_string(p.d), "D <= 256 on CUDA (the largest kernel)",
          "split the head dim, or run on the CPU");
  constexpr std::int64_t kMaxLen = (std::int64_t{1} << 31) - 1;
  require(p.nq <= kMaxLen && p.nk <= kMaxLen, "q/k", "Nq = " + std::to_string(p.nq) + ", Nk = " + std::to_string(p.nk),
          "sequence lengths < 2^31 on CUDA", "split the sequence");
  for (const View& v : views) {
    require(reinterpret_cast<std::uintptr_t>(v.data) % 16 == 0, v.name,
            "data pointer at byte offset " + std::to_string(reinterpret_cast<std::uintptr_t>(v.data) % 16) +
                " mod 16",
            "16-byte aligned on CUDA", "pass a tensor whose storage starts 16-byte aligned (e.g. .contiguous())");
    const bool ok = (p.varlen || p.batch <= 1 || v.s.b % 8 == 0) && (v.rows <= 1 || p.varlen || v.s.n % 8 == 0) &&
                    (!p.varlen || v.s.n % 8 == 0) && (v.heads <= 1 || v.s.h % 8 == 0);
    require(ok, v.name,
            "strides (batch " + std::to_string(v.s.b) + ", row " + std::to_string(v.s.n) + ", head " +
                std::to_string(v.s.h) + ") elements",
            "multiples of 8 elements (16 bytes) on CUDA", "pass a view whose rows start 16-byte aligned (.contiguous())");
  }
}

void check_cuda_args(const Problem& p, const FwdTensors& t) {
  check_cuda_args(p, {{"q", t.q, t.sq, p.nq, p.hq}, {"k", t.k, t.sk, p.nk, p.hkv},
                      {"v", t.v, t.sv, p.nk, p.hkv}, {"out", t.o, t.so, p.nq, p.hq}});
}

void check_cuda_args(const Problem& p, const BwdTensors& t) {
  check_cuda_args(p, {{"dout", t.dout, t.sdo, p.nq, p.hq}, {"q", t.q, t.sq, p.nq, p.hq},
                      {"k", t.k, t.sk, p.nk, p.hkv}, {"v", t.v, t.sv, p.nk, p.hkv},
                      {"out", t.o, t.so, p.nq, p.hq}, {"dq", t.dq, t.sdq, p.nq, p.hq},
                      {"dk", t.dk, t.sdk, p.nk, p.hkv}, {"dv", t.dv, t.sdv, p.nk, p.hkv}});
}

/// Stream-ordered device memory for one call (cudaMallocAsync / cudaFreeAsync on the caller's
/// stream: no device-wide synchronization, and capturable in a CUDA graph). Freed when the call ends,
/// also when it throws; the memory is reused by later work on the stream once the kernels are done.
class StreamBuffer {
 public:
  StreamBuffer(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    const cudaError_t e = cudaMallocAsync(&ptr_, bytes, stream);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw Error(Error::Kind::runtime, "backward workspace", std::to_string(bytes) + " bytes: " + cudaGetErrorString(e),
                  "cudaMallocAsync on the call's stream must succeed (dQ accumulator: 4 * Hq * B * Nq * D bytes, 8 * Hq * B * Nq * D when deterministic)",
                  "free GPU memory, or split the batch into several calls");
    }
  }
  ~StreamBuffer() { cudaFreeAsync(ptr_, stream_); }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  [[nodiscard]] unsigned char* data() const { return static_cast<unsigned char*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace

std::string built_instances() {
  std::map<std::string, std::string> groups;
  for (const Instance& in : kInstances) {
    if (in.launch == nullptr) continue;
    std::string& g = groups[std::string(name(in.dataflow)) + " " + name(in.family) + " " + std::string(name(in.dtype)) +
                            (in.variant == VariantId::plain ? "" : std::string(" ") + variant_name(in.variant))];
    g += (g.empty() ? "D=" : ",") + std::to_string(in.d);
  }
  for (const BwdInstance& in : kBwdInstances) {
    if (in.launch == nullptr) continue;
    std::string& g = groups[std::string("bwd ") + name(in.family) + " " + std::string(name(in.dtype)) +
                            (in.variant == VariantId::plain ? "" : std::string(" ") + variant_name(in.variant))];
    g += (g.empty() ? "D=" : ",") + std::to_string(in.d);
  }
  if (groups.empty()) return "nothing (FLATATTN_HDIMS / FLATATTN_DTYPES left no instance)";
  std::ostringstream s;
  bool first = true;
  for (const auto& [k, v] : groups) {
    s << (first ? "" : "; ") << k << " " << v;
    first = false;
  }
  return s.str();
}

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

bool built() { return true; }

Report forward(const Problem& p, const FwdTensors& t, Stream stream) {
  check_cuda_args(p, t);
  Report r;
  r.backend = "cuda";
  DeviceGuard guard(p.device.index);
  const DeviceInfo& dev = device_info(p.device.index);
  const Family fam = family_for(dev, p.dtype);
  const VariantId variant = variant_of(p.variant);

  const Instance* flash = find(fam, Dataflow::flash, p.dtype, variant, p.d);
  const Instance* flat = find(fam, Dataflow::flat, p.dtype, variant, p.d);
  const Instance* inst = nullptr;
  switch (p.dataflow) {
    case Dataflow::flash:
      if (flash == nullptr) not_built(fam, Dataflow::flash, p.dtype, variant, p.d);
      inst = flash;
      break;
    case Dataflow::flat:
      if (flat == nullptr) not_built(fam, Dataflow::flat, p.dtype, variant, p.d);
      // A shape this dataflow does not serve (not a malformed argument): Kind::unsupported, as for an
      // instance that is not built, so callers can tell "pick another dataflow" from "fix the input".
      if (!flat_fits(fam, flat->d, p.nk))
        throw Error(Error::Kind::unsupported, "options.dataflow", "flat with Nk = " + std::to_string(p.nk),
                    "the FLAT kernel holds whole key rows of Nk <= " + std::to_string(flat_tile(fam, flat->d).cap_n()) +
                        " (D = " + std::to_string(flat->d) + ", " + name(fam) + " family)",
                    "use Dataflow::flash (or automatic) for longer rows");
      inst = flat;
      break;
    case Dataflow::automatic: {
      if (flash == nullptr && flat == nullptr) not_built(fam, Dataflow::flash, p.dtype, variant, p.d);
      Workload w{p.batch, p.hq, p.hkv, p.nq, p.nk, flash != nullptr ? flash->d : flat->d, p.dtype, p.mask};
      // An empty call (B = 0, Nq = 0 or Nk = 0) launches nothing: no plan to ask for (the planner refuses
      // empty shapes), the report names the flash kernel.
      const bool empty = p.batch == 0 || p.nq == 0 || p.nk == 0;
      const bool want_flat = flat != nullptr && flat_fits(fam, flat->d, p.nk) &&
                             (flash == nullptr || (!empty && choose_dataflow(dev, fam, w) == Dataflow::flat));
      if (!want_flat && flash == nullptr) not_built(fam, Dataflow::flash, p.dtype, variant, p.d);
      inst = want_flat ? flat : flash;
      break;
    }
  }
  if (inst == flash) inst = upgrade_flash(dev, flash);  // FLAT stays on the base family
  r.dataflow = inst->dataflow;
  r.kernel = instance_name(*inst);
  if (inst->d != p.d) r.kernel += " (D=" + std::to_string(p.d) + " zero-padded)";
  if (p.batch == 0 || p.nq == 0) return r;  // nothing to write
  LaunchArgs a;
  a.problem = &p;
  a.tensors = &t;
  a.stream = stream.handle;
  a.device = p.device.index;
  const LaunchInfo li = inst->launch(a);
  r.block_m = li.block_m;
  r.block_n = inst->dataflow == Dataflow::flat ? static_cast<int>(p.nk) : li.block_n;
  return r;
}

Report backward(const Problem& p, const BwdTensors& t, Stream stream) {
  check_cuda_args(p, t);
  Report r;
  r.backend = "cuda";
  r.dataflow = Dataflow::flash;
  DeviceGuard guard(p.device.index);
  const DeviceInfo& dev = device_info(p.device.index);
  const Family fam = family_for(dev, p.dtype);
  const VariantId variant = variant_of(p.variant);
  const BwdInstance* inst = upgrade_bwd(dev, find_bwd(fam, p.dtype, variant, p.d));
  if (inst == nullptr) {
    throw Error(Error::Kind::unsupported, "q",
                "backward kernel for " + std::string(name(p.dtype)) + ", D = " + std::to_string(p.d) +
                    (variant == VariantId::plain ? "" : std::string(", ") + variant_name(variant)) + " on the " + name(fam) + " family",
                "no built backward instance serves it; built: " + built_instances(),
                "rebuild with FLATATTN_HDIMS / FLATATTN_DTYPES covering it (and without FLATATTN_CUDA_SUBSET)");
  }
  const BwdTileSize tile = bwd_tile(inst->family, inst->d);
  r.kernel = std::string("bwd_") + name(inst->family) + "_" + std::string(name(p.dtype)) + "_d" + std::to_string(inst->d) +
             variant_suffix(variant) + (p.deterministic ? " (deterministic)" : "");
  if (inst->d != p.d) r.kernel += " (D=" + std::to_string(p.d) + " zero-padded)";
  r.block_m = tile.block_m;
  r.block_n = tile.block_n;
  if (p.batch == 0 || (p.nq == 0 && p.nk == 0)) return r;  // nothing to write

  // Workspace (BwdWorkspace): the dQ accumulator (Hq, B, Nq, D) -- fp32, or 64-bit fixed point when
  // deterministic -- and D_i (Hq, B, Nq).
  const std::size_t rows = static_cast<std::size_t>(p.hq) * static_cast<std::size_t>(p.batch) *
                           static_cast<std::size_t>(p.nq);
  const auto st = static_cast<cudaStream_t>(stream.handle);
  StreamBuffer ws(BwdWorkspace::bytes(rows, inst->d, p.deterministic), st);
  BwdLaunchArgs a;
  a.problem = &p;
  a.tensors = &t;
  a.stream = stream.handle;
  a.device = p.device.index;
  a.ws = BwdWorkspace::carve(ws.data(), rows, inst->d, p.deterministic);
  inst->launch(a);
  return r;
}

}  // namespace flatattn::cuda
