// The varlen metadata check's host side: the per-device error word, its pinned mirror and the Error
// naming the argument. See meta_check.h for the contract.
#include "src/cuda/meta_check.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "flatattn/error.h"
#include "src/core/backend.h"
#include "src/cuda/common/seq_rows.h"
#include "src/cuda/runtime.h"

namespace flatattn::cuda {

namespace {

constexpr int kMaxDevices = 64;  // device_info() refuses larger ordinals

/// A device's asynchronous error word (device memory) and its pinned host mirror, allocated once; and the
/// KV-cache calls' word, host memory mapped into the device (the kernels OR their bits straight into it, so
/// a decode step queues no copy: a 4-byte copy after every step would cost it microseconds).
struct DeviceWord {
  unsigned* dev = nullptr;
  unsigned* host = nullptr;
  unsigned* mapped = nullptr;      ///< host address of the KV-cache word
  unsigned* mapped_dev = nullptr;  ///< its device address
};

std::array<std::atomic<DeviceWord*>, kMaxDevices> g_words{};

/// The word of the current device `device`, allocated (zeroed) on first use; never freed (a few bytes
/// per device for the process).
DeviceWord& device_word(int device) {
  DeviceWord* w = g_words[static_cast<std::size_t>(device)].load(std::memory_order_acquire);
  if (w != nullptr) return *w;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  w = g_words[static_cast<std::size_t>(device)].load(std::memory_order_acquire);
  if (w != nullptr) return *w;
  auto* made = new DeviceWord;
  check(cudaMalloc(reinterpret_cast<void**>(&made->dev), sizeof(unsigned)), "cudaMalloc(metadata error word)");
  // A synchronous copy: the word is zero before any stream's kernel can see it (this first varlen call
  // on a device is therefore not capturable into a CUDA graph; later ones are).
  const unsigned zero = 0;
  check(cudaMemcpy(made->dev, &zero, sizeof(unsigned), cudaMemcpyHostToDevice), "cudaMemcpy(metadata error word)");
  check(cudaHostAlloc(reinterpret_cast<void**>(&made->host), sizeof(unsigned), cudaHostAllocDefault),
        "cudaHostAlloc(metadata error mirror)");
  *made->host = 0;
  check(cudaHostAlloc(reinterpret_cast<void**>(&made->mapped), sizeof(unsigned), cudaHostAllocMapped),
        "cudaHostAlloc(KV-cache metadata error word)");
  *made->mapped = 0;
  check(cudaHostGetDevicePointer(reinterpret_cast<void**>(&made->mapped_dev), made->mapped, 0),
        "cudaHostGetDevicePointer(KV-cache metadata error word)");
  g_words[static_cast<std::size_t>(device)].store(made, std::memory_order_release);
  return *made;
}

/// The Error for the bits of a word (common/seq_rows.h MetaError: bit i names names[i]): the first invalid
/// argument by name, the others listed. p: the varlen call (null for forward_kvcache), kv: the KV-cache
/// call (null for varlen), for the limits' values.
[[noreturn]] void raise(unsigned bits, int device, const Problem* p, const KvProblem* kv, bool earlier) {
  const char* names[] = {"cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k",
                         "cache.block_table", "cache.cache_seqlens", "cache.cache_batch_idx", "cache.cache_leftpad"};
  static_assert(kMetaCuQ == 1u && kMetaCuK == 2u && kMetaMaxQ == 4u && kMetaMaxK == 8u && kMetaBlockTable == 16u &&
                    kMetaCacheSeqlens == 32u && kMetaCacheBatchIdx == 64u && kMetaCacheLeftpad == 128u,
                "bit i names names[i]");
  constexpr int kNames = 8;
  int first = 0;
  while (first < kNames && !(bits & (1u << first))) ++first;
  if (first == kNames) first = 0;
  std::string also;
  for (int i = first + 1; i < kNames; ++i)
    if (bits & (1u << i)) also += std::string(also.empty() ? "; also " : ", ") + names[i];
  const std::string where = "cuda:" + std::to_string(device);
  const bool known = !earlier;
  std::string value = earlier ? "found invalid by the kernels of an earlier call on " + where +
                                    " (reported asynchronously; this call did nothing)"
                              : "found invalid by this call's kernels on " + where;
  value += also;
  std::string limit, fix;
  const char* skipped = "; the offending sequences were skipped (nothing of them written, the cache included)";
  if (first < 2) {
    const char* total = first == 0 ? "total_q" : "total_k";
    limit = std::string("must start at 0, be non-decreasing and end at most at the packed rows ") + total +
            (known && p != nullptr ? " = " + std::to_string(first == 0 ? p->total_q : p->total_k) : "") +
            "; the offending sequences were skipped (their rows not written)";
    fix = "pass the cumulative sums of the sequence lengths (int32, B + 1 entries)";
  } else if (first < 4) {
    const char* cu = first == 2 ? "cu_seqlens_q" : "cu_seqlens_k";
    limit = std::string("must be >= every length ") + cu + "[b+1] - " + cu + "[b]" +
            (known && p != nullptr ? " (it was " + std::to_string(first == 2 ? p->nq : p->nk) + ")" : "") +
            "; the longer sequences were skipped (their rows not written)";
    fix = "pass the longest sequence length";
  } else if (first == 4) {
    limit = "every entry of a sequence's key range [cache_leftpad[b], cache_seqlens[b] + Nnew) must be a page in [0, num_pages" +
            (known && kv != nullptr ? " = " + std::to_string(kv->num_pages) : std::string()) + ")" + skipped;
    fix = "pass page indices of k_cache/v_cache in block_table (int32, (B, max_pages))";
  } else if (first == 5) {
    limit = "must satisfy 0 <= cache_seqlens[b] and cache_seqlens[b] + Nnew <= capacity" +
            (known && kv != nullptr ? " = " + std::to_string(kv->capacity()) + " (Nnew = " + std::to_string(kv->nnew) + ")"
                                    : std::string()) +
            ", and with rotary every rotated position < rotary_cos rows" + skipped;
    fix = "pass the tokens already in each sequence's cache, and a cache (and rotary table) large enough for the new ones";
  } else if (first == 6) {
    limit = "must be a cache row in [0, B_cache" + (known && kv != nullptr ? " = " + std::to_string(kv->num_pages) : std::string()) +
            ")" + skipped;
    fix = "pass the row of k_cache/v_cache of each sequence";
  } else {
    limit = std::string("must satisfy 0 <= cache_leftpad[b] <= cache_seqlens[b]") + skipped;
    fix = "pass the number of padding positions at the start of each sequence's cache";
  }
  throw Error(Error::Kind::invalid_argument, names[first], value, limit, fix);
}

}  // namespace

void check_errors(int device, Stream stream) {
  DeviceGuard guard(device);
  if (stream.handle == nullptr) {
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(check_errors)");
  } else {
    check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream.handle)), "cudaStreamSynchronize(check_errors)");
  }
  if (device >= kMaxDevices) return;  // device_info() refuses these: no call ever ran there
  DeviceWord* pending = g_words[static_cast<std::size_t>(device)].load(std::memory_order_acquire);
  if (pending == nullptr) return;  // no varlen call on this device yet
  std::atomic_ref<unsigned> mirror(*pending->host);
  const unsigned bits = mirror.load(std::memory_order_relaxed) != 0 ? mirror.exchange(0, std::memory_order_acq_rel) : 0u;
  if (bits != 0) {
    check(cudaMemsetAsync(pending->dev, 0, sizeof(unsigned), static_cast<cudaStream_t>(stream.handle)),
          "cudaMemsetAsync(metadata error word)");
    raise(bits, device, nullptr, nullptr, true);
  }
  // The KV-cache calls' word (mapped host memory, written by the kernels themselves).
  std::atomic_ref<unsigned> mapped(*pending->mapped);
  const unsigned kv_bits = mapped.load(std::memory_order_relaxed) != 0 ? mapped.exchange(0, std::memory_order_acq_rel) : 0u;
  if (kv_bits != 0) raise(kv_bits, device, nullptr, nullptr, true);
}

bool metadata_checking() {
  const char* env = std::getenv("FLATATTN_CHECK_METADATA");
  return env != nullptr && env[0] == '1' && env[1] == '\0';
}

MetaCheck::MetaCheck(const Problem& p, cudaStream_t stream) : p_(&p), device_(p.device.index), stream_(stream) {
  start(p.device.index, p.varlen && p.batch != 0);
}

MetaCheck::MetaCheck(const KvProblem& p, cudaStream_t stream) : kv_(&p), device_(p.device.index), stream_(stream) {
  start(p.device.index, p.batch != 0);
}

void MetaCheck::start(int dev, bool active) {
  DeviceWord* pending = g_words[static_cast<std::size_t>(dev)].load(std::memory_order_acquire);
  if (pending != nullptr) {
    // The mirror is written by copies queued after earlier varlen launches: one thread claims a set word.
    // A plain load first: the common (clean) case writes nothing, so concurrent calls share the line.
    std::atomic_ref<unsigned> mirror(*pending->host);
    const unsigned bits = mirror.load(std::memory_order_relaxed) != 0 ? mirror.exchange(0, std::memory_order_acq_rel) : 0u;
    if (bits != 0) {
      check(cudaMemsetAsync(pending->dev, 0, sizeof(unsigned), stream_), "cudaMemsetAsync(metadata error word)");
      raise(bits, dev, p_, kv_, true);
    }
    // The KV-cache word: written by the kernels themselves (mapped host memory), cleared here.
    std::atomic_ref<unsigned> mapped(*pending->mapped);
    const unsigned kv_bits = mapped.load(std::memory_order_relaxed) != 0 ? mapped.exchange(0, std::memory_order_acq_rel) : 0u;
    if (kv_bits != 0) raise(kv_bits, dev, p_, kv_, true);
  }
  if (!active) return;
  checking_ = metadata_checking();
  if (checking_) {
    check(cudaMallocAsync(reinterpret_cast<void**>(&word_), sizeof(unsigned), stream_), "cudaMallocAsync(metadata check)");
    check(cudaMemsetAsync(word_, 0, sizeof(unsigned), stream_), "cudaMemsetAsync(metadata check)");
  } else {
    DeviceWord& w = device_word(dev);
    word_ = kv_ != nullptr ? w.mapped_dev : w.dev;
    mirror_ = kv_ != nullptr ? nullptr : w.host;  // the KV-cache word needs no copy (mapped)
  }
}

MetaCheck::~MetaCheck() {
  if (checking_ && word_ != nullptr) cudaFreeAsync(word_, stream_);
}

void MetaCheck::finish() {
  if (word_ == nullptr) return;
  if (!checking_) {
    if (mirror_ == nullptr) return;  // KV-cache calls: the kernels wrote the mapped word directly
    check(cudaMemcpyAsync(mirror_, word_, sizeof(unsigned), cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync(metadata error word)");
    return;
  }
  unsigned bits = 0;
  check(cudaMemcpyAsync(&bits, word_, sizeof(unsigned), cudaMemcpyDeviceToHost, stream_),
        "cudaMemcpyAsync(metadata check)");
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(metadata check)");
  if (bits != 0) raise(bits, device_, p_, kv_, false);
}

}  // namespace flatattn::cuda
