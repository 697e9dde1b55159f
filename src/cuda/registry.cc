// The instance tables (from the generated flatattn_cuda_instances.inc), their lookup index, the
// instance names and the "not built" error. See registry.h.
#include "src/cuda/registry.h"

#include <array>
#include <cstddef>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <utility>
#include <vector>

#include "flatattn/error.h"
#include "src/cuda/dispatch.h"

namespace flatattn::cuda {

namespace {

// The generated lists (CMake writes them from src/cuda/inst/manifest.cmake and the build options); NAME is the
// instance name tools/gen_instances.py gave the file (forward: without its "fwd_"), checked against the key below.
constexpr FwdInstance kFwd[] = {
#define FLATATTN_INSTANCE(F, DF, DT, D, VAR, NAME) \
  {Family::F, Dataflow::DF, DType::DT, D, VariantId::VAR, NAME, &launch_fwd<Family::F, Dataflow::DF, DType::DT, D, VariantId::VAR>},
#define FLATATTN_BWD_INSTANCE(F, DT, D, VAR, NAME)
#include "flatattn_cuda_instances.inc"
#undef FLATATTN_BWD_INSTANCE
#undef FLATATTN_INSTANCE
    {Family::sm80, Dataflow::automatic, DType::f32, 0, VariantId::plain, "", nullptr},  // end marker
};

constexpr BwdInstance kBwd[] = {
#define FLATATTN_INSTANCE(F, DF, DT, D, VAR, NAME)
#define FLATATTN_BWD_INSTANCE(F, DT, D, VAR, NAME) \
  {Family::F, DType::DT, D, VariantId::VAR, NAME, NAME " (deterministic)", &launch_bwd<Family::F, DType::DT, D, VariantId::VAR>},
#include "flatattn_cuda_instances.inc"
#undef FLATATTN_BWD_INSTANCE
#undef FLATATTN_INSTANCE
    {Family::sm80, DType::f32, 0, VariantId::plain, "", "", nullptr},  // end marker
};

// ---- compile-time check that each stored name spells its key ----------------------------------------
constexpr bool eat(std::string_view& s, std::string_view part) {
  if (!s.starts_with(part)) return false;
  s.remove_prefix(part.size());
  return true;
}

constexpr bool eat_int(std::string_view& s, int v) {
  char digits[12] = {};
  int n = 0;
  do digits[n++] = static_cast<char>('0' + v % 10), v /= 10;
  while (v > 0);
  while (n > 0)
    if (!eat(s, std::string_view(&digits[--n], 1))) return false;
  return true;
}

/// "_<family>_<dtype>_d<D>[_<variant>]" and nothing more.
constexpr bool eat_tail(std::string_view s, Family f, DType dt, int d, VariantId v) {
  return eat(s, "_") && eat(s, name(f)) && eat(s, "_") && eat(s, name(dt)) && eat(s, "_d") && eat_int(s, d) &&
         (v == VariantId::plain || (eat(s, "_") && eat(s, variant_name(v)))) && s.empty();
}

constexpr bool names_match_keys() {
  for (const FwdInstance& in : kFwd) {
    std::string_view s = in.name;
    if (in.launch != nullptr && !(eat(s, name(in.dataflow)) && eat_tail(s, in.family, in.dtype, in.d, in.variant)))
      return false;
  }
  for (const BwdInstance& in : kBwd) {
    std::string_view s = in.name;
    std::string_view det = in.name_det;
    if (in.launch != nullptr && !(eat(s, "bwd") && eat_tail(s, in.family, in.dtype, in.d, in.variant) &&
                                  det.starts_with(in.name) && det.ends_with(" (deterministic)")))
      return false;
  }
  return true;
}
static_assert(names_match_keys(), "an instance name does not spell its key");

// ---- lookup index ----------------------------------------------------------------------------------
constexpr int kFamilies = kFamilyCount, kDataflows = 3;

constexpr std::size_t slot(Family f, Dataflow df, DType dt, VariantId v) {
  return ((static_cast<std::size_t>(f) * kDataflows + static_cast<std::size_t>(df)) * kDTypeCount +
          static_cast<std::size_t>(dt)) * kVariantCount + static_cast<std::size_t>(v);
}

constexpr std::size_t bwd_slot(Family f, DType dt, VariantId v) {
  return (static_cast<std::size_t>(f) * kDTypeCount + static_cast<std::size_t>(dt)) * kVariantCount +
         static_cast<std::size_t>(v);
}

/// Per key, the instances in ascending head dim (built on first use; read-only afterwards, so lookups
/// take no lock), and which families have any instance.
struct Index {
  std::array<std::vector<const FwdInstance*>, kFamilies * kDataflows * kDTypeCount * kVariantCount> fwd;
  std::array<std::vector<const BwdInstance*>, kFamilies * kDTypeCount * kVariantCount> bwd;
  std::array<bool, kFamilies> family{};

  Index() {
    for (const FwdInstance& in : fwd_instances()) {
      add(fwd[slot(in.family, in.dataflow, in.dtype, in.variant)], &in);
      family[static_cast<std::size_t>(in.family)] = true;
    }
    for (const BwdInstance& in : bwd_instances()) {
      add(bwd[bwd_slot(in.family, in.dtype, in.variant)], &in);
      family[static_cast<std::size_t>(in.family)] = true;
    }
  }

  template <class T>
  static void add(std::vector<const T*>& list, const T* in) {
    auto at = list.begin();
    while (at != list.end() && (*at)->d < in->d) ++at;
    list.insert(at, in);
  }
};

const Index& index() {
  static const Index ix;
  return ix;
}

template <class T>
const T* smallest_at_least(const std::vector<const T*>& list, std::int64_t d) {
  for (const T* in : list)
    if (in->d >= d) return in;
  return nullptr;
}

bool valid(Family f, DType dt, VariantId v) {
  return static_cast<int>(f) < kFamilies && static_cast<int>(dt) < kDTypeCount && static_cast<int>(v) < kVariantCount;
}

}  // namespace

// The tables end with a marker entry (launch == nullptr), so that an empty build still compiles.
std::span<const FwdInstance> fwd_instances() { return {kFwd, std::size(kFwd) - 1}; }
std::span<const BwdInstance> bwd_instances() { return {kBwd, std::size(kBwd) - 1}; }

const FwdInstance* find_fwd(Family f, Dataflow df, DType dt, VariantId variant, std::int64_t d) {
  if (!valid(f, dt, variant) || static_cast<int>(df) >= kDataflows) return nullptr;
  return smallest_at_least(index().fwd[slot(f, df, dt, variant)], d);
}

const BwdInstance* find_bwd(Family f, DType dt, VariantId variant, std::int64_t d) {
  if (!valid(f, dt, variant)) return nullptr;
  return smallest_at_least(index().bwd[bwd_slot(f, dt, variant)], d);
}

bool has_family(Family f) {
  return static_cast<int>(f) < kFamilies && index().family[static_cast<std::size_t>(f)];
}

const std::string& padded_name(const char* name, std::int64_t d) {
  // Bounded by (instances x head dims <= 256). Every zero-padded call asks: hits share a reader lock, a
  // new name is made under the writer lock (std::map keeps references to its entries valid).
  static std::shared_mutex mu;
  static std::map<std::pair<const char*, std::int64_t>, std::string> names;
  {
    std::shared_lock<std::shared_mutex> read(mu);
    if (auto it = names.find({name, d}); it != names.end()) return it->second;
  }
  std::unique_lock<std::shared_mutex> write(mu);
  auto [it, fresh] = names.try_emplace({name, d});
  if (fresh) it->second = std::string(name) + " (D=" + std::to_string(d) + " zero-padded)";
  return it->second;
}

void not_built(std::string_view kernel, Family f, DType dt, VariantId variant, std::int64_t d) {
  const bool bwd = kernel == "backward";
  throw Error(Error::Kind::unsupported, "q",
              std::string(kernel) + " kernel for " + std::string(name(dt)) + ", D = " + std::to_string(d) +
                  (variant == VariantId::plain ? "" : std::string(", ") + variant_name(variant)) + " on the " + name(f) +
                  " family",
              std::string(bwd ? "no built backward instance" : "no built instance") + " serves it; built: " +
                  built_instances(),
              "rebuild with FLATATTN_HDIMS / FLATATTN_DTYPES covering it (and without FLATATTN_CUDA_SUBSET)");
}

std::string built_instances() {
  std::map<std::string, std::string> groups;
  auto add = [&](std::string key, VariantId v, int d) {
    std::string& g = groups[key + (v == VariantId::plain ? "" : std::string(" ") + variant_name(v))];
    g += (g.empty() ? "D=" : ",") + std::to_string(d);
  };
  for (const FwdInstance& in : fwd_instances())
    add(std::string(name(in.dataflow)) + " " + name(in.family) + " " + std::string(name(in.dtype)), in.variant, in.d);
  for (const BwdInstance& in : bwd_instances()) add(std::string("bwd ") + name(in.family) + " " + std::string(name(in.dtype)), in.variant, in.d);
  if (groups.empty()) return "nothing (FLATATTN_HDIMS / FLATATTN_DTYPES left no instance)";
  std::ostringstream s;
  bool first = true;
  for (const auto& [k, v] : groups) {
    s << (first ? "" : "; ") << k << " " << v;
    first = false;
  }
  return s.str();
}

}  // namespace flatattn::cuda
