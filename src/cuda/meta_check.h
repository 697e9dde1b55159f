// The varlen metadata check's host side. The kernels bound every sequence by the packed rows of the
// tensors and flag invalid cu_seqlens / max_seqlen in a 32-bit error word (common/block_info.cuh,
// MetaError bits); this turns the word into a flatattn::Error naming the argument.
//
// Contract (documented for users in include/flatattn/attention.h):
//  - FLATATTN_CHECK_METADATA=1 (read at each varlen CUDA call): checking mode. The call gets its own word,
//    synchronizes its stream after the launches and throws the violation it found.
//  - Otherwise each device has one word (allocated once) and a pinned host mirror; every varlen call
//    queues a copy of the word to the mirror after its launches, and the next CUDA forward/backward on
//    that device that finds the mirror set clears both and throws (doing nothing else). forward_kvcache
//    calls use a second word in mapped host memory that their kernels set directly (no copy per call). Concurrent calls
//    on several streams may report one violation in the call after the one that caused it, or twice.
#pragma once

#include <cuda_runtime.h>

#include "src/core/kv_problem.h"
#include "src/core/problem.h"

namespace flatattn::cuda {

/// One CUDA call's metadata check. Construct after the device is current and the arguments are checked:
/// throws the violation an earlier varlen call on the device left pending (asynchronous mode).
class MetaCheck {
 public:
  MetaCheck(const Problem& p, cudaStream_t stream);
  /// forward_kvcache (src/cuda/decode): the cache metadata (block_table, cache_seqlens, cache_batch_idx,
  /// cache_leftpad) is always device data, so every call with B > 0 gets a word.
  MetaCheck(const KvProblem& p, cudaStream_t stream);
  ~MetaCheck();
  MetaCheck(const MetaCheck&) = delete;
  MetaCheck& operator=(const MetaCheck&) = delete;

  /// The word the call's kernels flag (null for batched calls).
  [[nodiscard]] unsigned* word() const { return word_; }
  /// After the launches (varlen): checking mode waits for the stream and throws a violation; otherwise
  /// queues the copy of the device's word to its host mirror.
  void finish();

 private:
  void start(int device, bool active);
  const Problem* p_ = nullptr;      ///< varlen calls
  const KvProblem* kv_ = nullptr;  ///< forward_kvcache calls
  int device_ = 0;
  cudaStream_t stream_;
  unsigned* word_ = nullptr;
  unsigned* mirror_ = nullptr;
  bool checking_ = false;
};

/// Whether FLATATTN_CHECK_METADATA=1 is set (checking mode).
bool metadata_checking();

}  // namespace flatattn::cuda
