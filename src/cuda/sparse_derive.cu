// The device derivation of block-sparse lists (sparse_derive.h): one warp per row of the lists it builds.
// The warp walks its row's candidate blocks 32 at a time, lane l judging block c0 + l with the shared rule of
// src/core/sparse_rows.h; a ballot and a population count give each listed block its slot, so the row comes
// out ascending, exactly as the host's loop writes it.
#include "src/cuda/sparse_derive.h"

#include <cuda_runtime.h>

#include <string>

#include "flatattn/error.h"
#include "src/core/sparse_rows.h"
#include "src/cuda/common/seq_rows.h"

namespace flatattn::cuda {

namespace {

constexpr int kWarps = 8;  ///< rows per CTA (256 threads)

/// Appends the blocks this lane's pred marks to out (the warp's running count n), in lane order.
__device__ __forceinline__ void append(bool pred, std::int32_t value, std::int32_t* out, std::int64_t& n, int lane) {
  const unsigned mask = __ballot_sync(0xffffffffu, pred);
  if (pred) out[n + __popc(mask & ((1u << lane) - 1u))] = value;
  n += __popc(mask);
}

/// Row (b, r) of the local + global kv lists of a call of `batch` sequences: counts (batch, 1, nqb), indices
/// (batch, 1, nqb, nkb). Sequence lengths: (nq, nk) for batched calls, else from cu_q / cu_k (seq_rows: an
/// invalid pair gives an empty sequence).
__global__ void local_global_kernel(SparseSpec s, MaskSpec m, const int* cu_q, const int* cu_k, int total_q,
                                    int total_k, std::int64_t nq, std::int64_t nk, std::int64_t batch,
                                    std::int32_t* num, std::int32_t* idx, std::int32_t* fnum, std::int32_t* fidx) {
  const int lane = threadIdx.x & 31;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= batch * s.nqb) return;  // the whole warp
  const std::int64_t b = row / s.nqb, r = row % s.nqb;
  std::int64_t sq = nq, sk = nk;
  if (cu_q != nullptr) {
    sq = seq_rows(cu_q, static_cast<int>(b), total_q, static_cast<int>(nq), kMetaCuQ, kMetaMaxQ).len;
    sk = seq_rows(cu_k, static_cast<int>(b), total_k, static_cast<int>(nk), kMetaCuK, kMetaMaxK).len;
  }
  const LocalGlobalRow lr = local_global_row(s, b, r, sq);
  // Key blocks of the sequence, at most the row's width (sk <= nk: seq_rows bounds it by max_seqlen_k).
  std::int64_t cols = lr.i0 <= lr.i1 ? (sk + s.block_kv - 1) / s.block_kv : 0;
  if (cols > s.nkb) cols = s.nkb;
  std::int64_t np = 0, nf = 0;
  std::int32_t* out = idx + row * s.nkb;
  std::int32_t* fout = fidx + row * s.nkb;
  for (std::int64_t c0 = 0; c0 < cols; c0 += 32) {
    const std::int64_t c = c0 + lane;
    const BlockKind k = c < cols ? local_global_block(s, m, b, lr, c, sq, sk) : BlockKind::none;
    append(k == BlockKind::partial, static_cast<std::int32_t>(c), out, np, lane);
    append(k == BlockKind::full, static_cast<std::int32_t>(c), fout, nf, lane);
  }
  if (lane == 0) num[row] = static_cast<std::int32_t>(np), fnum[row] = static_cast<std::int32_t>(nf);
}

/// Row (b, h, c) of the transpose of kv over an nb x nh grid with `rows` row blocks and `cols` column blocks:
/// counts (nb, nh, cols), indices (nb, nh, cols, rows); fnum / fidx null when kv has no full lists.
__global__ void transpose_kernel(BlockLists kv, std::int64_t nb, std::int64_t nh, std::int64_t rows, std::int64_t cols,
                                 std::int32_t* num, std::int32_t* idx, std::int32_t* fnum, std::int32_t* fidx) {
  const int lane = threadIdx.x & 31;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= nb * nh * cols) return;  // the whole warp
  const std::int64_t b = row / (nh * cols), h = row / cols % nh, c = row % cols;
  std::int64_t np = 0, nf = 0;
  for (std::int64_t r0 = 0; r0 < rows; r0 += 32) {
    const std::int64_t r = r0 + lane;
    const unsigned in = r < rows ? transposed_block(kv, b, h, r, c) : 0u;
    append(in & 1u, static_cast<std::int32_t>(r), idx + row * rows, np, lane);
    if (fnum != nullptr) append(in & 2u, static_cast<std::int32_t>(r), fidx + row * rows, nf, lane);
  }
  if (lane == 0) {
    num[row] = static_cast<std::int32_t>(np);
    if (fnum != nullptr) fnum[row] = static_cast<std::int32_t>(nf);
  }
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw Error(Error::Kind::runtime, what, cudaGetErrorString(e), "the sparse list derivation kernel must launch",
                "check the device state (an earlier asynchronous error?)");
}

unsigned grid_for(std::int64_t rows) { return static_cast<unsigned>((rows + kWarps - 1) / kWarps); }

/// The carving of the workspace: element offsets (int32) of each array.
struct Carve {
  std::int64_t kv_rows = 0, q_rows = 0, q_width = 0;
  bool q_full = false;
  std::size_t kv_num = 0, kv_fnum = 0, kv_idx = 0, kv_fidx = 0, q_num = 0, q_fnum = 0, q_idx = 0, q_fidx = 0,
              total = 0;
};

Carve carve(const Problem& p) {
  const SparseSpec& s = p.sparse;
  Carve c;
  std::size_t at = 0;
  auto take = [&at](std::int64_t n) {
    const std::size_t o = at;
    at += static_cast<std::size_t>(n);
    return o;
  };
  if (s.derive_kv) {
    c.kv_rows = p.batch * s.nqb;
    c.kv_num = take(c.kv_rows), c.kv_fnum = take(c.kv_rows);
    c.kv_idx = take(c.kv_rows * s.nkb), c.kv_fidx = take(c.kv_rows * s.nkb);
  }
  if (s.derive_q) {
    c.q_rows = s.list_b * s.list_h * s.nkb, c.q_width = s.nqb;  // derive_kv: B x 1 (validation sets it)
    c.q_full = s.derive_kv || s.kv.full_num.present();
    c.q_num = take(c.q_rows), c.q_idx = take(c.q_rows * c.q_width);
    if (c.q_full) c.q_fnum = take(c.q_rows), c.q_fidx = take(c.q_rows * c.q_width);
  }
  c.total = at;
  return c;
}

}  // namespace

std::size_t derived_lists_bytes(const Problem& p) { return carve(p).total * sizeof(std::int32_t); }

SparseSpec derive_lists(const Problem& p, void* ws, void* stream) {
  SparseSpec s = p.sparse;
  const Carve c = carve(p);
  auto* base = static_cast<std::int32_t*>(ws);
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (s.derive_kv) {
    if (c.kv_rows > 0) {
      local_global_kernel<<<grid_for(c.kv_rows), kWarps * 32, 0, st>>>(
          s, p.mask, p.varlen ? p.cu_seqlens_q : nullptr, p.varlen ? p.cu_seqlens_k : nullptr,
          static_cast<int>(p.total_q), static_cast<int>(p.total_k), p.nq, p.nk, p.batch, base + c.kv_num,
          base + c.kv_idx, base + c.kv_fnum, base + c.kv_fidx);
      check_launch("local_global (device lists)");
    }
    s.kv = contiguous_lists(base + c.kv_num, base + c.kv_idx, base + c.kv_fnum, base + c.kv_fidx, p.batch, 1, s.nqb,
                            s.nkb);
  }
  if (s.derive_q) {
    if (c.q_rows > 0) {
      transpose_kernel<<<grid_for(c.q_rows), kWarps * 32, 0, st>>>(
          s.kv, s.list_b, s.list_h, s.nqb, s.nkb, base + c.q_num, base + c.q_idx,
          c.q_full ? base + c.q_fnum : nullptr, c.q_full ? base + c.q_fidx : nullptr);
      check_launch("block_sparse.q_num_blocks (device transpose)");
    }
    s.q = contiguous_lists(base + c.q_num, base + c.q_idx, c.q_full ? base + c.q_fnum : nullptr,
                           c.q_full ? base + c.q_fidx : nullptr, s.list_b, s.list_h, s.nkb, s.nqb);
  }
  s.derive_kv = s.derive_q = false;
  return s;
}

DerivedLists::DerivedLists(const Problem& p, cudaStream_t stream) : p_(p) {
  const std::size_t bytes = derived_lists_bytes(p);
  void* ws = nullptr;
  if (bytes > 0) {
    buf_.emplace(bytes, stream, "sparse lists workspace",
                 "cudaMallocAsync on the call's stream must succeed (local + global kv lists: 8 B NQB (NKB + 1) bytes; "
                 "q lists: 8 B' H' NKB (NQB + 1) bytes)",
                 "free GPU memory, or pass the block lists (block_sparse, with q_num_blocks / q_indices)");
    ws = buf_->data();
  }
  p_.sparse = derive_lists(p, ws, stream);
}

}  // namespace flatattn::cuda
