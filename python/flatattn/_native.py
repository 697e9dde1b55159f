"""The native API: flatattn.forward / flatattn.backward, mirroring the C++ entry points.

Arrays from numpy (CPU), torch or CuPy (CPU or CUDA) are passed zero-copy over DLPack; outputs are allocated
with the inputs' library, or written into the `out=` / `lse=` / `dq=` ... buffers you pass. torch tensors go
through the registered custom ops (autograd, torch.compile) unless you pass output buffers.
"""

from __future__ import annotations

from . import _C
from . import _arrays as A
from ._errors import error

from .sparse import _check_block_sparse

_ALIGN = {"bottom_right": False, "top_left": True}


def _sparse_native(block_sparse, s):
    return None if block_sparse is None else block_sparse._native(lambda t: A.dlpack(t, s))


def _mask_args(causal_align, window):
    if causal_align not in _ALIGN:
        raise error("causal_align", repr(causal_align), "must be 'bottom_right' or 'top_left'",
                    "'bottom_right' is FlashAttention's convention, 'top_left' PyTorch SDPA's")
    try:
        left, right = (int(w) for w in window)
    except (TypeError, ValueError):
        raise error("window", repr(window), "must be a pair (left, right) of ints, -1 = unbounded",
                    "pass e.g. window=(128, 0)") from None
    return _ALIGN[causal_align], left, right


def _check_fp32_matmul(fp32_matmul):
    if fp32_matmul not in ("exact", "bf16"):
        raise error("fp32_matmul", repr(fp32_matmul), "must be 'exact' or 'bf16'",
                    "pass 'exact' (fp32 products) or 'bf16' (float32 inputs multiplied as bf16 on the CPU)")
    return fp32_matmul != "exact"


def forward(q, k, v, *, softmax_scale=None, causal=False, causal_align="bottom_right", window=(-1, -1),
            softcap=0.0, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0, return_lse=True,
            dataflow="auto", num_threads=0, deterministic=False, out=None, lse=None, stream=None,
            return_report=False, alibi_slopes=None, sinks=None, dropout_p=0.0, dropout_seed=0, dropout_offset=0,
            bias=None, block_sparse=None, dropout_row0=0, dropout_col0=0, fp32_matmul="exact", global_positions=None,
            global_counts=None):
    """Exact attention forward: ``out = softmax(mask(scale * q k^T)) v`` and its log-sum-exp.

    Shapes (FlashAttention layout, any strides with the last dim contiguous, so (B, H, N, D) tensors are
    passed as ``x.transpose(1, 2)`` views of numpy ``x.transpose(0, 2, 1, 3)``):

    - batched: q (B, Nq, Hq, D), k and v (B, Nk, Hkv, D); out like q; lse (B, Hq, Nq) float32
    - varlen: q (total_q, Hq, D), k and v (total_k, Hkv, D), int32 ``cu_seqlens_q`` / ``cu_seqlens_k`` (B + 1);
      lse (Hq, total_q). ``max_seqlen_q/k`` are required for CUDA tensors, derived when 0 on the CPU.

    dtypes: float32 (CPU only), float16, bfloat16 (torch); q, k, v share one. Hq must be a multiple of Hkv (GQA).

    Options: ``softmax_scale`` (default 1/sqrt(D)); ``causal`` with ``causal_align`` 'bottom_right'
    (FlashAttention >= 2.1: key j visible to query i when j <= i + Nk - Nq) or 'top_left' (SDPA: j <= i);
    ``window=(left, right)`` sliding window around that diagonal, -1 unbounded; ``softcap`` > 0 applies
    ``softcap * tanh(s / softcap)`` to the logits (Gemma 2); ``dataflow`` 'auto' | 'flash' | 'flat';
    ``num_threads`` for the CPU engine (0: all hardware threads, on every path). A row that sees no key outputs 0 with lse = -inf.

    ALiBi (Press et al., ICLR 2022): ``alibi_slopes`` float32 (Hq) or (B, Hq) on q's device adds
    ``-slope * |i + Nk - Nq - j|`` to each scaled logit (the sequence's own lengths; the distance to the
    bottom-right diagonal for causal, non-causal and top-left alike). FlashAttention-2's causal kernels add
    ``+slope * j`` instead: the same out and gradients, an lse larger by ``slope * (i + Nk - Nq)``. Not with softcap.
    Attention sinks (gpt-oss; Xiao et al. 2023): ``sinks`` (Hq) float32 (torch: other float dtypes converted), one
    logit per head in every row's denominator with no value: ``lse = log(sum_j e^s_ij + e^sink)``; a row that
    sees no key outputs 0 with lse = sink. With torch tensors that require grad, the sinks get their gradient.

    Additive bias (T5 relative positions, AlphaFold pair bias, Swin; SDPA's float ``attn_mask``): ``bias`` of shape
    (Bb, Hb, Mq, Nk) broadcastable to (B, Hq, Nq, Nk) (Bb in {1, B}, Hb in {1, Hq}, Mq in {1, Nq}; torch: any
    broadcastable shape, e.g. (Nq, Nk) or stride-0 expanded dims, is brought to that form), float32, float16 or
    bfloat16 (need not be q's dtype), last dim contiguous, is added to each scaled logit before the mask:
    ``s_ij = scale q_i.k_j + bias[b, h, i, j]`` (-inf hides a key). Varlen: B sequences, Nq = max_seqlen_q,
    Nk = max_seqlen_k, indexed within each sequence. Not with softcap, ALiBi or dropout. With torch tensors that
    require grad, the bias gets its gradient (dS, summed over its broadcast dims).

    Dropout: ``dropout_p`` in [0, 1) drops each softmax probability with that probability and scales the kept
    ones by 1 / (1 - dropout_p) before P V (lse stays that of the undropped softmax). The keep decision is a
    pure function of (``dropout_seed``, ``dropout_offset``, sequence, query head, row, column): Philox-4x32-10,
    the same bits on the CPU and every GPU kernel (:func:`dropout_mask` materializes it; docs/variants.md,
    "Dropout"). Pass the same three values to :func:`backward`. Seeds and offsets are ints in [0, 2^64)
    ([0, 2^63) through torch's ops). For context parallelism, ``dropout_row0`` and ``dropout_col0`` (ints >= 0,
    col0 a multiple of 64, else FlatattnError naming it) place the call at that row and key column of a longer
    sequence: the mask of the call is the whole sequence's mask at those positions (pass them to backward too).

    Block-sparse attention (docs/sparse.md; FlexAttention's BlockMask layout): ``block_sparse`` a
    :class:`flatattn.BlockSparse` of int32 arrays on q's device (the key blocks each query block visits, partial and
    full, and the bit-packed element mask of the partial blocks; see its docstring and include/flatattn/sparse.h).
    Skipped blocks cost nothing; a row with no visible key outputs 0 with lse = -inf. CPU forward and backward;
    CUDA forward and backward (sm80-family kernels; on Hopper the sm90 ones at D = 64 and 128; block sizes multiples of
    the tile, e.g. 128). torch tensors go through the ``flatattn::variant_fwd`` op (autograd reaches q, k, v), as do
    ALiBi, sinks and a bias.

    Local + global attention (Longformer, Beltagy et al. 2020, Sec. 3.1; BigBird's window + global part):
    ``global_positions`` int32 (B', G) (B' in {1, B}: per sequence, or one row for all; varlen: positions within
    each sequence), each row strictly increasing, in [0, max(Nq, Nk)), on q's device (numpy, torch or CuPy), with
    ``window=(left, right)`` as the local band: query i sees key j when j is in the band, or i is a global
    position (a global row sees every key), or j is a global position (every query sees a global key); with
    ``causal`` only keys left of (or on) the diagonal, global or not. ``global_counts`` int32 (B'), optional:
    how many of each row of ``global_positions`` are used (in [0, G]; absent: all G; G = 0 or a count of 0: the
    band alone). With ``block_sparse``: its element rule for the partial blocks (no ``mask_bits`` then); without:
    the library derives the block lists itself (128 x 128 blocks). CPU and CUDA, forward and backward (pass the
    same arrays to :func:`backward`). Errors (:class:`FlatattnError` naming ``local_global.global_positions`` or
    ``local_global.global_counts``, nothing written): wrong dtype, rank, shape or device, unsorted, repeated or
    out-of-range positions, a count outside [0, G] (contents checked for CPU arrays; on CUDA they are read
    unchecked: keep them valid), ``global_counts`` without ``global_positions``. torch tensors go through the
    ``flatattn::variant_fwd`` op (autograd reaches q, k, v; the positions get no gradient).

    CUDA: asynchronous on ``stream`` (default: torch's or CuPy's current stream).

    ``fp32_matmul`` (after ``torch.set_float32_matmul_precision``): 'exact' (default) multiplies float32 inputs in
    fp32; 'bf16' lets the CPU engine round float32 q, k, v (and dout in :func:`backward`) to bfloat16 (nearest
    even) and multiply them on the AMX tiles (AVX512-BF16 where AMX is absent), accumulating in fp32; out, lse and
    the gradients stay float32. The precision is that of a bfloat16 call on the rounded inputs (about 1e-3
    relative on out instead of ~1e-5); the Report's kernel name ends in '_amx' or '_avx512bf16'. Raises
    :class:`FlatattnError` naming ``fp32_matmul`` for float16 inputs, CUDA tensors, or a CPU with neither unit.
    bfloat16 inputs are unaffected. torch tensors with 'bf16' take the arrays path (as with ``out=``): no autograd
    through this call (q, k or v requiring grad, with grad enabled, raise :class:`FlatattnError`); call
    :func:`backward` yourself with the same ``fp32_matmul``.

    Returns ``(out, lse)`` (``lse`` None when ``return_lse=False``), plus the :class:`Report` when
    ``return_report=True``. Raises :class:`FlatattnError` naming the argument before writing anything.

    Algorithms: Dao et al., FlashAttention (NeurIPS'22) Alg. 1 and FlashAttention-2 (2023) Sec. 3;
    Kao et al., FLAT (ASPLOS'23) Sec. 4.
    """
    top_left, wl, wr = _mask_args(causal_align, window)
    lib = A.library(q)
    varlen = cu_seqlens_q is not None or cu_seqlens_k is not None
    if block_sparse is not None:
        _check_block_sparse(block_sparse)
    ops = not _check_fp32_matmul(fp32_matmul)  # the registered torch ops carry no fp32_matmul
    if not ops and lib == "torch" and any(getattr(x, "requires_grad", False) for x in (q, k, v)):
        import torch

        if torch.is_grad_enabled():  # the arrays path has no autograd: refuse rather than drop the gradients
            raise error("fp32_matmul", "'bf16' with q, k or v requiring grad",
                        "the opt-in does not go through autograd (the registered ops carry no fp32_matmul)",
                        "pass detached tensors and call flatattn.backward(..., fp32_matmul='bf16') yourself, "
                        "or leave fp32_matmul='exact'")
    if ops and lib == "torch" and out is None and lse is None and not return_report and (
            block_sparse is not None or bias is not None or alibi_slopes is not None or sinks is not None or
            dropout_row0 or dropout_col0 or global_positions is not None):
        from . import torch_ops

        if bias is not None:
            nq = max_seqlen_q if varlen else q.shape[1]
            nk = max_seqlen_k if varlen else k.shape[1]
            batch = (cu_seqlens_q.shape[0] - 1) if varlen else q.shape[0]
            bias = torch_ops.as_bias(bias, batch, q.shape[-2], nq, nk)
        opts = (None if softmax_scale is None else float(softmax_scale), bool(causal), top_left, wl, wr,
                float(softcap), bool(deterministic), float(dropout_p), int(dropout_seed), int(dropout_offset),
                dataflow, int(num_threads))
        with torch_ops.stream_scope(q, stream):
            o, l = torch_ops.variant_forward(q, k, v, opts, alibi_slopes=alibi_slopes, sinks=sinks, bias=bias,
                                             block_sparse=block_sparse, cu_seqlens_q=cu_seqlens_q,
                                             cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
                                             max_seqlen_k=max_seqlen_k, dropout_row0=dropout_row0,
                                             dropout_col0=dropout_col0, global_positions=global_positions,
                                             global_counts=global_counts)
        return o, (l if return_lse else None)
    if ops and lib == "torch" and out is None and lse is None and not return_report:
        from . import torch_ops

        with torch_ops.stream_scope(q, stream):  # `stream` honoured on the op path too
            o, l = torch_ops.attention(q, k, v, softmax_scale=softmax_scale, causal=causal, top_left=top_left,
                                       window_left=wl, window_right=wr, softcap=softcap, deterministic=deterministic,
                                       cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                                       max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, dataflow=dataflow,
                                       num_threads=num_threads, dropout_p=dropout_p, dropout_seed=dropout_seed,
                                       dropout_offset=dropout_offset)
        return o, (l if return_lse else None)
    if out is None:
        out = A.empty_like(q, lib)
    if return_lse and lse is None:
        lse = A.empty_f32(q, A.lse_shape(q, varlen), lib)
    if not return_lse:
        lse = None
    s = A.current_stream(q, lib, stream)
    report = _C.forward(A.dlpack(q, s), A.dlpack(k, s), A.dlpack(v, s), A.dlpack(out, s),
                        A.dlpack(lse, s), A.dlpack(cu_seqlens_q, s), A.dlpack(cu_seqlens_k, s),
                        int(max_seqlen_q or 0), int(max_seqlen_k or 0), softmax_scale, bool(causal), top_left,
                        wl, wr, float(softcap), dataflow, int(num_threads), s,
                        alibi_slopes=A.dlpack(alibi_slopes, s), sinks=A.dlpack(sinks, s), dropout_p=float(dropout_p),
                        seed=int(dropout_seed), offset=int(dropout_offset), bias=A.dlpack(bias, s),
                        block_sparse=_sparse_native(block_sparse, s), dropout_row0=int(dropout_row0),
                        dropout_col0=int(dropout_col0), fp32_matmul=fp32_matmul,
                        global_positions=A.dlpack(global_positions, s), global_counts=A.dlpack(global_counts, s))
    return (out, lse, report) if return_report else (out, lse)


def backward(dout, q, k, v, out, lse, *, softmax_scale=None, causal=False, causal_align="bottom_right",
             window=(-1, -1), softcap=0.0, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0,
             deterministic=False, num_threads=0, dq=None, dk=None, dv=None, stream=None, return_report=False,
             alibi_slopes=None, sinks=None, dsinks=None, dropout_p=0.0, dropout_seed=0, dropout_offset=0, bias=None,
             dbias=None, block_sparse=None, dropout_row0=0, dropout_col0=0, fp32_matmul="exact", global_positions=None,
             global_counts=None):
    """Exact attention backward: ``(dq, dk, dv)`` from ``dout``, the inputs, and the forward's ``out`` and ``lse``.

    Same shapes, dtypes and options as :func:`forward` (pass the forward's options). dout, dq are like q;
    dk, dv like k, v (summed over the query heads of a GQA group). P is recomputed from lse and
    ``D_i = rowsum(dout * out)`` (FlashAttention-2, Alg. 2); nothing N x N is stored.
    ``deterministic=True`` asks for bitwise-reproducible gradients (no floating-point atomics). With dropout,
    pass the forward's ``dropout_p``, ``dropout_seed`` and ``dropout_offset`` (and ``dropout_row0/col0``): the same
    mask is regenerated (FlashAttention Alg. 4).

    With ``sinks`` (the forward's; ``lse`` must be the forward's with them) the sinks' gradient
    ``dsinks = -sum_{b,i} e^(sink - lse_i) rowsum(dout_i * out_i)`` (Hq) float32 is returned after dv (written into
    ``dsinks`` when given); ``alibi_slopes`` are the forward's.

    With ``bias`` (the forward's; for the arrays path in the library's (Bb, Hb, Mq, Nk) form) its gradient
    ``dbias`` (the bias's shape and dtype: dS summed over the bias's size-1 dims, fp32 accumulation; written into
    ``dbias`` when given) is returned last.

    With ``block_sparse`` (the forward's :class:`flatattn.BlockSparse`) only the listed blocks are revisited;
    the q lists (the transpose: q_num_blocks, q_indices, full_q_*) are optional (absent: the library derives them,
    on CUDA on the device). With ``global_positions`` / ``global_counts`` (the forward's): local + global attention,
    as in :func:`forward`.

    Returns ``(dq, dk, dv)``, ``(dq, dk, dv, dsinks)`` with sinks, and ``dbias`` after those with a bias (plus the
    :class:`Report` when ``return_report=True``).

    ``fp32_matmul``: as in :func:`forward` (float32 q, k, v and dout rounded to bfloat16 for the five products).
    """
    top_left, wl, wr = _mask_args(causal_align, window)
    lib = A.library(q)
    if block_sparse is not None:
        _check_block_sparse(block_sparse)
    ops = not _check_fp32_matmul(fp32_matmul)  # the registered torch ops carry no fp32_matmul
    if ops and lib == "torch" and dq is None and dk is None and dv is None and dsinks is None and dbias is None and \
            not return_report and (block_sparse is not None or bias is not None or alibi_slopes is not None or
                                   sinks is not None or dropout_row0 or dropout_col0 or
                                   global_positions is not None):
        from . import torch_ops

        opts = (None if softmax_scale is None else float(softmax_scale), bool(causal), top_left, wl, wr,
                float(softcap), bool(deterministic), float(dropout_p), int(dropout_seed), int(dropout_offset),
                int(num_threads))
        with torch_ops.stream_scope(q, stream):
            g = torch_ops.variant_backward(dout, q, k, v, out, lse, opts, alibi_slopes=alibi_slopes, sinks=sinks,
                                           bias=bias, want_dbias=bias is not None, block_sparse=block_sparse,
                                           cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                                           max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k,
                                           dropout_row0=dropout_row0, dropout_col0=dropout_col0,
                                           global_positions=global_positions, global_counts=global_counts)
        return (*g[:3], *((g[3],) if sinks is not None else ()), *((g[4],) if bias is not None else ()))
    if ops and lib == "torch" and dq is None and dk is None and dv is None and not return_report:
        from . import torch_ops

        with torch_ops.stream_scope(q, stream):
            return torch_ops.attention_backward(dout, q, k, v, out, lse, softmax_scale=softmax_scale, causal=causal,
                                                top_left=top_left, window_left=wl, window_right=wr, softcap=softcap,
                                                deterministic=deterministic, cu_seqlens_q=cu_seqlens_q,
                                                cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
                                                max_seqlen_k=max_seqlen_k, num_threads=num_threads,
                                                dropout_p=dropout_p, dropout_seed=dropout_seed,
                                                dropout_offset=dropout_offset)
    dq = A.empty_like(q, lib) if dq is None else dq
    dk = A.empty_like(k, lib) if dk is None else dk
    dv = A.empty_like(v, lib) if dv is None else dv
    if sinks is not None and dsinks is None:
        dsinks = A.empty_like(sinks, lib)
    if bias is not None and dbias is None:
        dbias = A.empty_like(bias, lib)
    s = A.current_stream(q, lib, stream)
    report = _C.backward(A.dlpack(dout, s), A.dlpack(q, s), A.dlpack(k, s), A.dlpack(v, s),
                         A.dlpack(out, s), A.dlpack(lse, s), A.dlpack(dq, s), A.dlpack(dk, s),
                         A.dlpack(dv, s), A.dlpack(cu_seqlens_q, s), A.dlpack(cu_seqlens_k, s),
                         int(max_seqlen_q or 0), int(max_seqlen_k or 0), softmax_scale, bool(causal), top_left, wl,
                         wr, float(softcap), bool(deterministic), int(num_threads), s,
                         alibi_slopes=A.dlpack(alibi_slopes, s), sinks=A.dlpack(sinks, s), dsinks=A.dlpack(dsinks, s),
                         dropout_p=float(dropout_p), seed=int(dropout_seed), offset=int(dropout_offset),
                         bias=A.dlpack(bias, s), dbias=A.dlpack(dbias, s),
                         block_sparse=_sparse_native(block_sparse, s), dropout_row0=int(dropout_row0),
                         dropout_col0=int(dropout_col0), fp32_matmul=fp32_matmul,
                         global_positions=A.dlpack(global_positions, s), global_counts=A.dlpack(global_counts, s))
    grads = (dq, dk, dv) if sinks is None else (dq, dk, dv, dsinks)
    if bias is not None:
        grads = (*grads, dbias)
    return (*grads, report) if return_report else grads


def dropout_mask(batch, hq, nq, nk, *, dropout_p, dropout_seed, dropout_offset, out=None, stream=None, dropout_row0=0,
                 dropout_col0=0, dropout_slot=(0, 0, 0)):
    """The dropout keep mask of a call with these options: uint8 (B, Hq, Nq, Nk), 1 where the probability of
    sequence b, query head h, row i, key column j (within the sequence; varlen: Nq, Nk the longest lengths) is
    kept, 0 where it is dropped; bitwise what :func:`forward` and :func:`backward` apply on every backend.

    ``dropout_row0``, ``dropout_col0``: the mask of a block at that row and key column of a longer sequence
    (col0 a multiple of 64), as :func:`forward` takes them. ``dropout_slot``: (dropout_batch0, dropout_head0,
    dropout_heads), Options' numbering of the stream's sequences and heads: the mask of sequences batch0 .. and
    query heads head0 .. of a stream of dropout_heads query heads (0: hq) (ring attention over documents, Ulysses).

    ``out``: a contiguous uint8 array of that shape to write (numpy, torch or CuPy; CPU or CUDA, asynchronous on
    ``stream`` there); None: a new numpy array. Returns it. Raises :class:`FlatattnError` naming ``dropout_p``
    outside [0, 1).
    """
    if out is None:
        import numpy as np

        out = np.empty((int(batch), int(hq), int(nq), int(nk)), dtype=np.uint8)
    if tuple(out.shape) != (int(batch), int(hq), int(nq), int(nk)):
        raise error("out", f"shape {tuple(out.shape)}", f"must be (B, Hq, Nq, Nk) = {(batch, hq, nq, nk)}",
                    "allocate it with that shape")
    lib = A.library(out)
    s = A.current_stream(out, lib, stream)
    _C.dropout_mask(A.dlpack(out, s), float(dropout_p), int(dropout_seed), int(dropout_offset), s,
                    dropout_row0=int(dropout_row0), dropout_col0=int(dropout_col0),
                    dropout_slot=[int(x) for x in dropout_slot] if any(dropout_slot) else [])
    return out
