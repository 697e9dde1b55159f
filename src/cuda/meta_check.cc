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

/// A device's asynchronous error word (device memory) and its pinned host mirror, allocated once.
struct DeviceWord {
  unsigned* dev = nullptr;
  unsigned* host = nullptr;
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
  g_words[static_cast<std::size_t>(device)].store(made, std::memory_order_release);
  return *made;
}

/// The Error for the bits of a word (common/seq_rows.h MetaError: bit i names names[i]): the first invalid argument by name, the others listed.
[[noreturn]] void raise(unsigned bits, const Problem& p, bool earlier) {
  const char* names[] = {"cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k"};
  static_assert(kMetaCuQ == 1u && kMetaCuK == 2u && kMetaMaxQ == 4u && kMetaMaxK == 8u, "bit i names names[i]");
  int first = 0;
  while (!(bits & (1u << first))) ++first;
  std::string also;
  for (int i = first + 1; i < 4; ++i)
    if (bits & (1u << i)) also += std::string(also.empty() ? "; also " : ", ") + names[i];
  const std::string where = "cuda:" + std::to_string(p.device.index);
  std::string value = earlier ? "found invalid by the kernels of an earlier varlen call on " + where +
                                    " (reported asynchronously; this call did nothing)"
                              : "found invalid by this call's kernels on " + where;
  value += also;
  std::string limit, fix;
  if (first < 2) {
    const char* total = first == 0 ? "total_q" : "total_k";
    limit = std::string("must start at 0, be non-decreasing and end at most at the packed rows ") + total +
            (earlier ? "" : " = " + std::to_string(first == 0 ? p.total_q : p.total_k)) +
            "; the offending sequences were skipped (their rows not written)";
    fix = "pass the cumulative sums of the sequence lengths (int32, B + 1 entries)";
  } else {
    const char* cu = first == 2 ? "cu_seqlens_q" : "cu_seqlens_k";
    limit = std::string("must be >= every length ") + cu + "[b+1] - " + cu + "[b]" +
            (earlier ? "" : " (it was " + std::to_string(first == 2 ? p.nq : p.nk) + ")") +
            "; the longer sequences were skipped (their rows not written)";
    fix = "pass the longest sequence length";
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
  if (bits == 0) return;
  check(cudaMemsetAsync(pending->dev, 0, sizeof(unsigned), static_cast<cudaStream_t>(stream.handle)),
        "cudaMemsetAsync(metadata error word)");
  Problem p;
  p.device = Device{DeviceKind::cuda, device};
  raise(bits, p, true);
}

bool metadata_checking() {
  const char* env = std::getenv("FLATATTN_CHECK_METADATA");
  return env != nullptr && env[0] == '1' && env[1] == '\0';
}

MetaCheck::MetaCheck(const Problem& p, cudaStream_t stream) : p_(p), stream_(stream) {
  const int dev = p.device.index;
  DeviceWord* pending = g_words[static_cast<std::size_t>(dev)].load(std::memory_order_acquire);
  if (pending != nullptr) {
    // The mirror is written by copies queued after earlier varlen launches: one thread claims a set word.
    // A plain load first: the common (clean) case writes nothing, so concurrent calls share the line.
    std::atomic_ref<unsigned> mirror(*pending->host);
    const unsigned bits = mirror.load(std::memory_order_relaxed) != 0 ? mirror.exchange(0, std::memory_order_acq_rel) : 0u;
    if (bits != 0) {
      check(cudaMemsetAsync(pending->dev, 0, sizeof(unsigned), stream), "cudaMemsetAsync(metadata error word)");
      raise(bits, p, true);
    }
  }
  if (!p.varlen || p.batch == 0) return;
  checking_ = metadata_checking();
  if (checking_) {
    check(cudaMallocAsync(reinterpret_cast<void**>(&word_), sizeof(unsigned), stream), "cudaMallocAsync(metadata check)");
    check(cudaMemsetAsync(word_, 0, sizeof(unsigned), stream), "cudaMemsetAsync(metadata check)");
  } else {
    DeviceWord& w = device_word(dev);
    word_ = w.dev;
    mirror_ = w.host;
  }
}

MetaCheck::~MetaCheck() {
  if (checking_ && word_ != nullptr) cudaFreeAsync(word_, stream_);
}

void MetaCheck::finish() {
  if (word_ == nullptr) return;
  if (!checking_) {
    check(cudaMemcpyAsync(mirror_, word_, sizeof(unsigned), cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync(metadata error word)");
    return;
  }
  unsigned bits = 0;
  check(cudaMemcpyAsync(&bits, word_, sizeof(unsigned), cudaMemcpyDeviceToHost, stream_),
        "cudaMemcpyAsync(metadata check)");
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(metadata check)");
  if (bits != 0) raise(bits, p_, false);
}

}  // namespace flatattn::cuda
