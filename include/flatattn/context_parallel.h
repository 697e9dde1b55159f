// flatattn: context parallelism -- ring attention over a sequence sharded across the ranks of a ring.
//
// Each rank holds a shard of one sequence of N = W * n tokens: q (B, n, Hq, D), k, v (B, n, Hkv, D) (any strides
// with the last dim contiguous, as forward()). K/V shards travel around the ring (rank r sends to r + 1 and
// receives from r - 1) while every rank attends its queries to the shard it holds; the next shard's transfer is
// posted before the current one's compute, so the two overlap. Partial outputs are merged by their LSEs in fp32
// and rounded once. The backward sends K/V around again with an fp32 dK/dV accumulator that collects every
// rank's contribution and arrives back at its owner; dQ is accumulated locally in fp32.
// Algorithm: Liu, Zaharia, Abbeel, "Ring Attention with Blockwise Transformers for Near-Infinite Context",
// arXiv:2310.01889, Sec. 3; merge: FlashAttention-2's rescaling (Dao, arXiv:2307.08691, Sec. 3.1) across blocks.
// The same semantics as the Python ring (python/flatattn/distributed/ring.py); docs/context_parallel.md.
//
// Masks are global: causal and window apply to the positions in the whole sequence (both causal alignments
// coincide on the full square sequence). The layout says which positions a rank holds (SeqLayout).
// Communication goes through a RingTransport: NCCL (nccl_transport, builds with -DFLATATTN_NCCL=ON) or the
// in-process LocalRing (threads of one process, CPU or one GPU: tests and examples).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "flatattn/attention.h"

namespace flatattn {

/// Which global positions rank r of W holds, n local tokens each (N = W n).
/// contiguous: [r n, (r + 1) n).
/// zigzag (DualChunkSwap; Brandon et al., "Striped Attention", arXiv:2311.09431, Sec. 3, and Megatron-LM's
/// context parallelism): the sequence is cut into 2W chunks of n / 2 tokens, rank r holds chunks r and 2W-1-r in
/// that order, which balances causal work across ranks. n must be even.
enum class SeqLayout : std::uint8_t { contiguous, zigzag };

constexpr std::string_view name(SeqLayout l) { return l == SeqLayout::zigzag ? "zigzag" : "contiguous"; }

/// The point-to-point exchange of the ring. Every rank of a ring calls post()/wait() in the same order (the ring
/// code does), so the i-th post of one rank pairs with the i-th post of its peers.
class RingTransport {
 public:
  virtual ~RingTransport() = default;
  /// This member's rank in [0, world) and the ring's size.
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int world() const = 0;
  /// The device whose memory the transport moves: the tensors' device (NCCL: the communicator's GPU).
  [[nodiscard]] virtual Device device() const = 0;
  /// Posts, without waiting: send `bytes` bytes at `send` to rank (rank + to) mod W, and receive `bytes` bytes
  /// into `recv` from rank (rank + from) mod W. The buffers are device memory of the tensors' device (host memory
  /// for CPU tensors) and must stay valid until wait(). The transfer is ordered after the work already on
  /// `stream` (the caller's compute stream; ignored for CPU tensors). Returns a ticket for wait().
  virtual int post(const void* send, void* recv, std::size_t bytes, int to, int from, Stream stream) = 0;
  /// Completes a ticket: work ordered on `stream` after this call sees `recv` filled, and `send` may be
  /// overwritten by it. Blocks the calling thread as long as the transport needs (LocalRing: until the peer posted).
  virtual void wait(int ticket, Stream stream) = 0;
};

/// An in-process ring of `world` members (threads of one process exchanging through memory): one member per
/// thread, each running ring_forward/ring_backward on its rank. Buffers on `device`: CPU memory, or CUDA memory
/// of one process (the sending stream is synchronized at post(), the receiver copies with cudaMemcpyAsync on
/// its stream and waits for it). For tests, examples and engines that run several ranks in one process.
/// Errors: world < 1, rank outside [0, world) (Error naming world / rank).
/// The hub must outlive its members; each member is used by one thread at a time.
class LocalRing {
 public:
  explicit LocalRing(int world, Device device = Device::cpu());
  ~LocalRing();
  LocalRing(const LocalRing&) = delete;
  LocalRing& operator=(const LocalRing&) = delete;
  [[nodiscard]] int world() const;
  /// The transport of rank `rank`.
  [[nodiscard]] std::unique_ptr<RingTransport> member(int rank);
  struct Hub;

 private:
  std::unique_ptr<Hub> hub_;
};

/// The NCCL transport of rank `rank` in a communicator of `world` ranks: `comm` is an ncclComm_t, `stream` the
/// cudaStream_t the ring's compute runs on (the transport posts ncclSend/ncclRecv pairs in a group on its own
/// stream, ordered after `stream` by events, and orders later work on `stream` after them at wait()). The caller
/// keeps the communicator alive and owns it. One GPU per rank (NCCL's rule).
/// Errors: a build without NCCL (Kind::unsupported: rebuild with -DFLATATTN_NCCL=ON); a null comm; rank/world
/// that do not match the communicator's (ncclCommUserRank, ncclCommCount); an NCCL or CUDA failure (Kind::runtime).
std::unique_ptr<RingTransport> nccl_transport(void* comm, int rank, int world, Stream stream);

/// Whether this build has the NCCL transport (-DFLATATTN_NCCL=ON).
bool nccl_built();

/// This rank's shards and outputs of ring_forward(). out (B, n, Hq, D) in q's dtype; lse (B, Hq, n) fp32 when
/// Options::return_lse (the LSE over the whole sequence).
struct RingForwardArgs {
  TensorView q, k, v;
  TensorView out;
  TensorView lse;
  /// Optional document mask: int32 (S + 1) host memory (also for CUDA tensors), the boundaries of S documents
  /// packed into the whole sequence of N = W n tokens (0 = cu_seqlens[0] <= ... <= cu_seqlens[S] = N, the same
  /// on every rank, in global positions, whatever the layout). A query sees only keys of its own document
  /// (causal and window then apply within it, as varlen forward() with Nq = Nk per document). Absent: one
  /// document. The ring's hops cut every block at document starts (more, smaller calls).
  TensorView cu_seqlens;
};

/// This rank's shards of ring_backward(): the forward's q, k, v, out and lse (required), dout; dq, dk, dv
/// written (overwritten) with the gradients of this rank's shards over the whole ring.
struct RingBackwardArgs {
  TensorView dout, q, k, v, out, lse;
  TensorView dq, dk, dv;
  TensorView cu_seqlens;  ///< the forward's (RingForwardArgs::cu_seqlens); absent: one document
};

/// Ring attention forward of this rank's query shard over the whole sequence. Every rank of the ring calls it
/// together with the same shapes and options. Options: softmax_scale, causal, window (global positions),
/// softcap, return_lse, dataflow, num_threads, deterministic as forward(); causal_align is irrelevant (square).
/// dropout_p, dropout_seed, dropout_offset as forward() on the whole sequence: each rank's mask is the
/// single-device mask (every block call passes its global position, Options::dropout_row0/col0, which the caller
/// leaves 0; ring_backward regenerates the same masks). A Philox call of the stream serves 16 keys of a 64-key group,
/// so every block must start at a global key that is a multiple of 64 (kDropoutColAlign): n_local a multiple of 128
/// (zigzag) or 64 (contiguous), and
/// a window whose left side cuts a key block elsewhere is refused. Blocks are not fused with dropout (a zigzag
/// shard's two chunks are not adjacent globally). With cu_seqlens each (hop, document) call draws its document's
/// stream as varlen forward() numbers it (Options::dropout_batch0 = the document's index, row0/col0 from the
/// document's start), so the masks are varlen dropout's; a document crossing a shard chunk boundary must meet it
/// at a multiple of 32 of the document (else refused, naming cu_seqlens).
/// The shapes and options of every rank are compared first (W - 1 hops of a small descriptor around the ring),
/// so a bad argument on one rank raises an Error on every rank rather than a hang.
/// Errors (flatattn::Error, nothing written): shapes/dtypes/devices as forward() (q and k/v shards must hold
/// the same n positions); cu_seqlens not int32 rank 1 on the host, not from 0 to W n, decreasing, or different
/// between ranks; an odd n under zigzag; n = 0; dropout_p outside [0, 1), or off the 64-key grid (above; with
/// cu_seqlens: of the document); dropout_row0/col0 or dropout_batch0/head0/heads not 0; shapes or options
/// that differ between ranks (uneven shards), naming the field and both ranks; transport rank/world out of
/// range. The call is synchronous for the host (it waits for its exchanges) and asynchronous on `stream` for CUDA.
Report ring_forward(const RingForwardArgs& args, RingTransport& transport, SeqLayout layout,
                    const Options& options = {}, Stream stream = {});

/// Ring attention backward: dq, dk, dv of this rank's shards (the dK/dV of a shard is summed over every rank's
/// queries in fp32 and returned to its owner; dQ is summed in fp32). On the CPU the block calls write fp32
/// gradients (16-bit inputs too), so the sums are rounded once; on CUDA the kernels write them in the input dtype
/// (each hop's contribution rounded once). Same rules and errors as ring_forward.
Report ring_backward(const RingBackwardArgs& args, RingTransport& transport, SeqLayout layout,
                     const Options& options = {}, Stream stream = {});

}  // namespace flatattn
