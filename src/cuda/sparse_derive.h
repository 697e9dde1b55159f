// Block-sparse lists the CUDA backend derives on the device (issue 16): the kv lists of local + global
// attention without BlockSparse (SparseSpec::derive_kv) and the backward's transposed q lists when the caller
// passes none (derive_q). Stream-ordered on the call's stream, with no host synchronization and no host read of
// device data, so a call that derives lists can be captured in a CUDA graph. The per-block verdicts are
// src/core/sparse_rows.h's, which the host builders (src/core/sparse_lists.cc) use too: for valid inputs the
// device lists equal the CPU's entry for entry (counts and the first count indices of every row; the entries
// past a row's count are left unwritten). Defined in sparse_derive.cu. Plain C++ header.
//
// Inputs are read on the device and not validated there (docs/sparse.md): sequence lengths come from
// cu_seqlens through seq_rows (a sequence whose metadata is invalid gets empty lists; the attention kernels
// report the metadata through MetaCheck), counts are clamped to [0, W] (global counts to [0, G]) before
// anything is read, so nothing outside the tensors is read whatever they hold. Unsorted or out-of-range
// positions / indices give lists that are wrong for the call but stay inside their buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "src/core/problem.h"
#include "src/cuda/runtime.h"

namespace flatattn::cuda {

/// Bytes of the lists derive_lists writes for p (0 when p.sparse derives nothing), int32 each:
///   derive_kv: counts 2 x B NQB, indices 2 x B NQB NKB (partial and full), i.e. 8 B NQB (NKB + 1) bytes;
///   derive_q:  counts 2 x B' H' NKB, indices 2 x B' H' NKB NQB (full ones only with full kv lists), i.e.
///              up to 8 B' H' NKB (NQB + 1) bytes (B' x H' = p.sparse.list_b x list_h; B x 1 with derive_kv).
/// E.g. B = 1, N = 128K, 128 x 128 blocks: 8 MiB each.
std::size_t derived_lists_bytes(const Problem& p);

/// Launches the derivation of p.sparse's derive_kv / derive_q lists into ws (derived_lists_bytes(p) bytes of
/// device memory, 4-byte aligned) on `stream` (a cudaStream_t), and returns p.sparse with kv / q pointing at
/// them (derive flags cleared). p's device must be current. Throws Error(runtime) when a launch fails; writes
/// nothing outside ws.
SparseSpec derive_lists(const Problem& p, void* ws, void* stream);

/// A call's derived lists for its lifetime: the stream-ordered buffer (StreamBuffer: cudaMallocAsync, freed
/// with cudaFreeAsync when the call ends) and p with the derived views in place.
class DerivedLists {
 public:
  DerivedLists(const Problem& p, cudaStream_t stream);
  DerivedLists(const DerivedLists&) = delete;
  DerivedLists& operator=(const DerivedLists&) = delete;
  [[nodiscard]] const Problem& problem() const { return p_; }

 private:
  Problem p_;
  std::optional<StreamBuffer> buf_;
};

}  // namespace flatattn::cuda
