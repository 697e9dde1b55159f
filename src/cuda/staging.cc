// Staging of the views the kernels cannot address directly. See staging.h.
#include "src/cuda/staging.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "src/cuda/check_args.h"

namespace flatattn::cuda {

Staging::Staging(const Problem& p, const FwdTensors& t, void* stream) : p_(p), p8_(p), stream_(stream), fwd_(t) {
  p8_.d = (p.d + 7) / 8 * 8;
  add(t.q, &fwd_.sq, true, true, &fwd_.q, nullptr);
  add(t.k, &fwd_.sk, false, true, &fwd_.k, nullptr);
  add(t.v, &fwd_.sv, false, true, &fwd_.v, nullptr);
  add(t.o, &fwd_.so, true, false, nullptr, &fwd_.o);
  start();
}

Staging::Staging(const Problem& p, const BwdTensors& t, void* stream) : p_(p), p8_(p), stream_(stream), bwd_(t) {
  p8_.d = (p.d + 7) / 8 * 8;
  add(t.dout, &bwd_.sdo, true, true, &bwd_.dout, nullptr);
  add(t.q, &bwd_.sq, true, true, &bwd_.q, nullptr);
  add(t.k, &bwd_.sk, false, true, &bwd_.k, nullptr);
  add(t.v, &bwd_.sv, false, true, &bwd_.v, nullptr);
  add(t.o, &bwd_.so, true, true, &bwd_.o, nullptr);
  add(t.dq, &bwd_.sdq, true, false, nullptr, &bwd_.dq);
  add(t.dk, &bwd_.sdk, false, false, nullptr, &bwd_.dk);
  add(t.dv, &bwd_.sdv, false, false, nullptr, &bwd_.dv);
  start();
}

void Staging::add(const void* data, RowStrides* s_slot, bool q_rows, bool input, const void** in_slot,
                  void** out_slot) {
  const std::int64_t rows = q_rows ? p_.nq : p_.nk;
  const std::int64_t heads = q_rows ? p_.hq : p_.hkv;
  if (kernel_addressable(p_, data, *s_slot, rows, heads)) return;
  Part part{};
  part.data = data;
  part.s = *s_slot;
  // Varlen: one "batch" of the packed rows (the strides' b is unused).
  part.shape.batch = p_.varlen ? 1 : p_.batch;
  part.shape.n = p_.varlen ? (q_rows ? p_.total_q : p_.total_k) : rows;
  part.shape.heads = heads;
  part.shape.d = p_.d;
  part.shape.d8 = p8_.d;
  part.offset = bytes_;
  part.input = input;
  if (p_.varlen && !input) part.row_end = (q_rows ? p_.cu_seqlens_q : p_.cu_seqlens_k) + p_.batch;
  part.in_slot = in_slot;
  part.out_slot = out_slot;
  part.s_slot = s_slot;
  bytes_ += (static_cast<std::size_t>(part.shape.elements()) * 2 + 255) / 256 * 256;
  parts_.push_back(part);
}

void Staging::start() {
  ws_.emplace(std::max<std::size_t>(bytes_, 256), static_cast<cudaStream_t>(stream_), "padding workspace",
              "cudaMallocAsync on the call's stream must succeed (2 * round_up(D, 8) bytes per row and head of each "
              "tensor staged because D is not a multiple of 8 or its rows are not 16-byte aligned)",
              "free GPU memory, split the batch into several calls, or pass D a multiple of 8 with 16-byte aligned "
              "rows (.contiguous()), which needs no staging");
  for (const Part& part : parts_) {
    unsigned char* copy = ws_->data() + part.offset;
    const std::int64_t row = part.shape.heads * part.shape.d8;
    *part.s_slot = RowStrides{p_.varlen ? 0 : part.shape.n * row, row, part.shape.d8};
    if (part.input) {
      *part.in_slot = copy;
      pad_rows(part.data, part.s, copy, part.shape, stream_);
    } else {
      *part.out_slot = copy;
    }
  }
}

void Staging::finish() {
  for (const Part& part : parts_)
    if (!part.input)
      unpad_rows(ws_->data() + part.offset, const_cast<void*>(part.data), part.s, part.shape, part.row_end, stream_);
}

}  // namespace flatattn::cuda
