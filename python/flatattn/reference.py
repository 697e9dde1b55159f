"""The fp64 oracle (src/reference) on CPU arrays: the yardstick of every test.

``precision='f64'`` is the oracle: every step in double, float64 outputs. ``precision='input'`` is naive
attention rounded to q's dtype after each step, as a framework computing it in that dtype would; its error
against the oracle is the ``naive_lowp`` term of the correctness rule (docs/design.md). Inputs: numpy arrays or
CPU torch tensors (bfloat16 only through torch), same layouts and options as :func:`flatattn.forward`.
"""

from __future__ import annotations

from . import _C
from . import _arrays as A
from ._native import _mask_args, _sparse_native


def _out_dtype(precision):
    return "float64" if precision == "f64" else "same"


def forward(q, k, v, *, precision="f64", softmax_scale=None, causal=False, causal_align="bottom_right",
            window=(-1, -1), softcap=0.0, cu_seqlens_q=None, cu_seqlens_k=None, alibi_slopes=None, sinks=None,
            dropout_p=0.0, dropout_seed=0, dropout_offset=0, bias=None, block_sparse=None, dropout_row0=0,
            dropout_col0=0, global_positions=None, global_counts=None):
    """Returns ``(out, lse)``: out float64 (precision 'f64') or q's dtype ('input'); lse float64. ``alibi_slopes``
    (Hq) or (B, Hq) and ``sinks`` (Hq), float32 or float64, as :func:`flatattn.forward`. Dropout as in
    :func:`flatattn.forward` (the oracle evaluates the keep function itself). ``bias`` (Bb, Hb, Mq, Nk), any float
    dtype, as :func:`flatattn.forward`. ``block_sparse`` a :class:`flatattn.BlockSparse` of CPU arrays (the
    oracle applies its element rule element by element). ``global_positions`` (B', G) / ``global_counts`` (B')
    int32 CPU arrays: local + global attention as :func:`flatattn.forward` (the oracle applies the rule element by
    element)."""
    top_left, wl, wr = _mask_args(causal_align, window)
    lib = A.library(q)
    varlen = cu_seqlens_q is not None
    out = A.empty(q, tuple(q.shape), _out_dtype(precision), lib)
    lse = A.empty(q, A.lse_shape(q, varlen), "float64", lib)
    _C.reference_forward(A.dlpack(q, 0), A.dlpack(k, 0), A.dlpack(v, 0), A.dlpack(out, 0), A.dlpack(lse, 0),
                         A.dlpack(cu_seqlens_q, 0), A.dlpack(cu_seqlens_k, 0), softmax_scale, bool(causal),
                         top_left, wl, wr, float(softcap), precision, alibi_slopes=A.dlpack(alibi_slopes, 0),
                         sinks=A.dlpack(sinks, 0), dropout_p=float(dropout_p), seed=int(dropout_seed),
                         offset=int(dropout_offset), bias=A.dlpack(bias, 0),
                         block_sparse=_sparse_native(block_sparse, 0), dropout_row0=int(dropout_row0),
                         dropout_col0=int(dropout_col0), global_positions=A.dlpack(global_positions, 0),
                         global_counts=A.dlpack(global_counts, 0))
    return out, lse


def backward(dout, q, k, v, *, precision="f64", softmax_scale=None, causal=False, causal_align="bottom_right",
             window=(-1, -1), softcap=0.0, cu_seqlens_q=None, cu_seqlens_k=None, alibi_slopes=None, sinks=None,
             dropout_p=0.0, dropout_seed=0, dropout_offset=0, bias=None, block_sparse=None, dropout_row0=0,
             dropout_col0=0, global_positions=None, global_counts=None):
    """Returns exact ``(dq, dk, dv)`` (float64 for 'f64'; rounded per step to q's dtype for 'input'), and with
    ``sinks`` also ``dsinks`` (Hq) float64, and with ``bias`` last ``dbias`` (the bias's shape; float64 for 'f64',
    else q's dtype). Dropout and ``global_positions`` / ``global_counts`` as in :func:`flatattn.backward`."""
    top_left, wl, wr = _mask_args(causal_align, window)
    lib = A.library(q)
    varlen = cu_seqlens_q is not None
    dt = _out_dtype(precision)
    dq = A.empty(q, tuple(q.shape), dt, lib)
    dk = A.empty(q, tuple(k.shape), dt, lib)
    dv = A.empty(q, tuple(v.shape), dt, lib)
    # out and lse are validated but not read by the oracle (it recomputes P): shaped placeholders.
    out = A.empty(q, tuple(q.shape), "float64", lib)
    lse = A.empty(q, A.lse_shape(q, varlen), "float64", lib)
    dsinks = None if sinks is None else A.empty(q, tuple(sinks.shape), "float64", lib)
    dbias = None if bias is None else A.empty(q, tuple(bias.shape), dt, lib)
    _C.reference_backward(A.dlpack(dout, 0), A.dlpack(q, 0), A.dlpack(k, 0), A.dlpack(v, 0), A.dlpack(out, 0),
                          A.dlpack(lse, 0), A.dlpack(dq, 0), A.dlpack(dk, 0), A.dlpack(dv, 0),
                          A.dlpack(cu_seqlens_q, 0), A.dlpack(cu_seqlens_k, 0), softmax_scale, bool(causal),
                          top_left, wl, wr, float(softcap), precision, alibi_slopes=A.dlpack(alibi_slopes, 0),
                          sinks=A.dlpack(sinks, 0), dsinks=A.dlpack(dsinks, 0), dropout_p=float(dropout_p),
                          seed=int(dropout_seed), offset=int(dropout_offset), bias=A.dlpack(bias, 0),
                          dbias=A.dlpack(dbias, 0), block_sparse=_sparse_native(block_sparse, 0),
                          dropout_row0=int(dropout_row0), dropout_col0=int(dropout_col0),
                          global_positions=A.dlpack(global_positions, 0), global_counts=A.dlpack(global_counts, 0))
    grads = (dq, dk, dv) if sinks is None else (dq, dk, dv, dsinks)
    return grads if bias is None else (*grads, dbias)


def forward_kvcache(q, k_cache, v_cache, cache_seqlens, *, precision="f64", k=None, v=None, rotary_cos=None,
                    rotary_sin=None, rotary_interleaved=False, cache_batch_idx=None, cache_leftpad=None,
                    block_table=None, softmax_scale=None, causal=False, window=(-1, -1), softcap=0.0,
                    alibi_slopes=None, sinks=None, cu_seqlens_q=None, max_seqlen_q=0):
    """The oracle of :func:`flatattn.forward_kvcache` (src/reference/reference_kvcache.h): appends k, v (rotated
    in fp64, stored once in the cache dtype) into ``k_cache`` / ``v_cache`` IN PLACE (pass copies), then returns
    ``(out, lse)``: out float64 ('f64') or q's dtype ('input'), lse (B, H, Sq) float64. Same arguments as
    :func:`flatattn.forward_kvcache` (cache_seqlens an int32 (B) array); with ``cu_seqlens_q`` (varlen q
    (total_q, H, D), no append) lse is (H, total_q)."""
    lib = A.library(q)
    left, right = window
    out = A.empty(q, tuple(q.shape), _out_dtype(precision), lib)
    lse = A.empty(q, A.lse_shape(q, cu_seqlens_q is not None), "float64", lib)
    d = A.dlpack
    _C.reference_forward_kvcache(d(q, 0), d(k_cache, 0), d(v_cache, 0), d(out, 0), d(lse, 0), d(cache_seqlens, 0),
                                 d(block_table, 0), d(cache_batch_idx, 0), d(cache_leftpad, 0), d(k, 0), d(v, 0),
                                 d(rotary_cos, 0), d(rotary_sin, 0), bool(rotary_interleaved), d(alibi_slopes, 0),
                                 d(sinks, 0), softmax_scale, bool(causal), int(left), int(right), float(softcap),
                                 precision, d(cu_seqlens_q, 0), int(max_seqlen_q))
    return out, lse
