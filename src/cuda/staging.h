// Staging: how the CUDA backend serves a view its kernels cannot address directly (check_args.h
// kernel_addressable: D not a multiple of 8, or rows not 16-byte aligned) instead of refusing it. Each
// such view gets a dense, zero-padded copy of D8 = round_up(D, 8) columns in one stream-ordered workspace
// (pad_rows.h); the call runs the existing instances on the staged problem (D8, the copies) and the
// staged outputs are copied back, their first D columns only. Zero columns change no dot product, so
// the result is the unpadded one (FlashAttention-2 pads the same way in its Python wrapper). With D % 8
// != 0 every view is staged (the kernels read whole 16-byte chunks); with D % 8 == 0 only the unaligned
// ones. The cost is one extra pass over the staged tensors (bench/gpu: --d 59,111,200).
//
// Order: the constructor allocates and pads the inputs; the kernels run; finish() writes the outputs.
// So when allocation or the launch fails, nothing of the caller's outputs has been written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "src/core/problem.h"
#include "src/cuda/pad_rows.h"
#include "src/cuda/runtime.h"

namespace flatattn::cuda {

class Staging {
 public:
  /// Stages q, k, v (padded in) and out (copied back by finish()) where they need it. The current device
  /// must be p's; `stream` is the call's cudaStream_t.
  Staging(const Problem& p, const FwdTensors& t, void* stream);
  /// Stages dout, q, k, v, out (padded in) and dq, dk, dv (copied back by finish()) where they need it.
  Staging(const Problem& p, const BwdTensors& t, void* stream);
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  /// The problem the kernels run: p with D = D8.
  [[nodiscard]] const Problem& problem() const { return p8_; }
  /// The tensors the kernels run on (staged views replaced by their copies).
  [[nodiscard]] const FwdTensors& forward_tensors() const { return fwd_; }
  [[nodiscard]] const BwdTensors& backward_tensors() const { return bwd_; }

  /// Copies the staged outputs into the caller's views (the first D columns; varlen: the rows of the
  /// sequences). Call once, after the kernels were launched.
  void finish();

 private:
  /// One staged view: the caller's data and strides, and where its copy lives in the workspace.
  struct Part {
    const void* data;
    RowStrides s;
    PadShape shape;
    std::size_t offset;
    bool input;                  ///< padded in by the constructor
    const std::int32_t* row_end; ///< output rows end (varlen: &cu_seqlens[B]); null: all rows
    const void** in_slot;        ///< the kernel-side pointer to redirect (input)
    void** out_slot;             ///< the kernel-side pointer to redirect (output)
    RowStrides* s_slot;          ///< the kernel-side strides to redirect
  };

  /// Adds `data`'s view (q-side rows when q_rows, else k-side) to the parts when the kernels cannot
  /// address it, pointing *slot and *s_slot at its copy once the workspace exists.
  void add(const void* data, RowStrides* s_slot, bool q_rows, bool input, const void** in_slot, void** out_slot);
  /// Allocates the workspace, redirects the slots, pads the inputs.
  void start();

  Problem p_, p8_;
  void* stream_;
  FwdTensors fwd_{};
  BwdTensors bwd_{};
  std::vector<Part> parts_;
  std::size_t bytes_ = 0;
  std::optional<StreamBuffer> ws_;
};

}  // namespace flatattn::cuda
