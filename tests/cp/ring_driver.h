// Runs ring attention on a whole-sequence check case (src/check/case.h): shards q, k, v, dout by a layout, runs
// W ranks as threads of one process over a LocalRing (or a transport the caller makes), and gathers out, lse, dq,
// dk, dv back into the case for judgement against the fp64 oracle. Shared by tests/cp (CPU) and tests/cuda.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flatattn/context_parallel.h"
#include "src/check/case.h"

namespace flatattn::testing {

/// Where a rank's tensors live: CPU views over the host shards, or device copies (tests/cuda).
struct RingMemory {
  virtual ~RingMemory() = default;
  /// A view of `h` on the device (uploaded), kept alive by the RingMemory.
  virtual TensorView put(check::HostTensor& h) = 0;
  /// Copies the device view made by put(h) back into h.
  virtual void get(check::HostTensor& h) = 0;
  /// This rank's stream (CUDA) or none.
  virtual Stream stream() { return {}; }
};

/// The rank's shard of a whole (B, N, H, D) tensor (rows of the layout's segments), and the inverse.
check::HostTensor shard_rows(const check::HostTensor& full, SeqLayout layout, int rank, int world);
void unshard_rows(check::HostTensor& full, const check::HostTensor& part, SeqLayout layout, int rank, int world);
/// The same on (B, H, N) (the LSE).
check::HostTensor shard_lse(const check::HostTensor& full, SeqLayout layout, int rank, int world);
void unshard_lse(check::HostTensor& full, const check::HostTensor& part, SeqLayout layout, int rank, int world);

struct RingRun {
  std::vector<std::string> errors;  ///< per rank: "" or the Error's argument + message
  Report report;                    ///< rank 0's forward report
};

/// Runs the ring forward (and backward) of case t (the whole sequence, batched, Nq = Nk; or a varlen case with
/// seqlens_q = seqlens_k: one packed sequence of documents, passed as cu_seqlens) on `world` threads,
/// writing t.out, t.lse (and t.dq, t.dk, t.dv). options: the ring's (t.c.options with return_lse). memory(r)
/// gives rank r's memory; transport(r) its transport (null: one LocalRing of `world` on `device`).
RingRun run_ring(check::CaseTensors& t, int world, SeqLayout layout, const Options& options, bool backward,
                 const std::function<std::unique_ptr<RingMemory>(int)>& memory,
                 Device device = Device::cpu(),
                 const std::function<std::unique_ptr<RingTransport>(int)>& transport = nullptr);

/// CPU memory: views over the host shards themselves.
std::unique_ptr<RingMemory> cpu_memory(int rank);

}  // namespace flatattn::testing
