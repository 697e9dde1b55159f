"""PyTorch custom ops: flatattn::fwd, flatattn::bwd, flatattn::varlen_fwd, flatattn::varlen_bwd.

Registered with torch.library.custom_op (torch >= 2.4) with fake kernels and autograd, so they work under
``torch.compile(fullgraph=True)`` without graph breaks and inside CUDA-graph capture. The extension does not
link libtorch: tensors reach it as DLPack capsules (no copy) and CUDA work is queued on the caller's current
stream, so the package does not depend on the torch ABI.

Layouts are the FlashAttention ones: q (B, Nq, Hq, D), k/v (B, Nk, Hkv, D), any strides with the last dim
contiguous; out is allocated like q (``torch.empty_like``: a (B, H, N, D)-major q gives a (B, H, N, D)-major
out), lse (B, Hq, Nq) float32. Varlen: q (total_q, Hq, D), lse (Hq, total_q). The lse output is not
differentiable (marked so): gradients flow through out only.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import _C
from ._arrays import lse_shape

__all__ = ["attention", "attention_backward"]

try:
    _capsule = torch._C._to_dlpack  # C-level DLPack export: ~0.4 us vs ~4 us for Tensor.__dlpack__
except AttributeError:  # pragma: no cover
    from torch.utils.dlpack import to_dlpack as _capsule

_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _stream(t: Tensor) -> int:
    if t.device.type != "cuda":
        return 0
    if _raw_stream is not None:
        return _raw_stream(t.device.index)
    return torch.cuda.current_stream(t.device).cuda_stream  # pragma: no cover


def _threads(t: Tensor, num_threads: int) -> int:
    if num_threads or t.device.type != "cpu":
        return num_threads
    return torch.get_num_threads()


class _on_device:
    """Makes t's GPU current for the call when it is not already (multi-GPU); a no-op otherwise."""

    __slots__ = ("guard",)

    def __init__(self, t: Tensor):
        self.guard = None
        if t.device.type == "cuda" and t.device.index != torch.cuda.current_device():
            self.guard = torch.cuda.device(t.device.index)

    def __enter__(self):
        if self.guard is not None:
            self.guard.__enter__()

    def __exit__(self, *exc):
        if self.guard is not None:
            self.guard.__exit__(*exc)


def _cap(t: Optional[Tensor]):
    return None if t is None else _capsule(t)


# ---- forward ---------------------------------------------------------------------------------------------


def _fwd_impl(q, k, v, cu_q, cu_k, max_q, max_k, softmax_scale, causal, top_left, window_left, window_right,
              softcap, dataflow, num_threads):
    out = torch.empty_like(q)
    lse = q.new_empty(lse_shape(q, cu_q is not None), dtype=torch.float32)
    with _on_device(q):
        _C.forward(_capsule(q), _capsule(k), _capsule(v), _capsule(out), _capsule(lse), _cap(cu_q), _cap(cu_k),
                   max_q, max_k, softmax_scale, causal, top_left, window_left, window_right, softcap, dataflow,
                   _threads(q, num_threads), _stream(q))
    return out, lse


@torch.library.custom_op("flatattn::fwd", mutates_args=(), device_types=("cpu", "cuda"))
def fwd(q: Tensor, k: Tensor, v: Tensor, softmax_scale: Optional[float], causal: bool, top_left: bool,
        window_left: int, window_right: int, softcap: float, deterministic: bool, dataflow: str,
        num_threads: int) -> tuple[Tensor, Tensor]:
    """Batched forward: (out, lse). ``deterministic`` is kept for the backward."""
    return _fwd_impl(q, k, v, None, None, 0, 0, softmax_scale, causal, top_left, window_left, window_right, softcap,
                     dataflow, num_threads)


@torch.library.custom_op("flatattn::varlen_fwd", mutates_args=(), device_types=("cpu", "cuda"))
def varlen_fwd(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor, max_seqlen_q: int,
               max_seqlen_k: int, softmax_scale: Optional[float], causal: bool, top_left: bool, window_left: int,
               window_right: int, softcap: float, deterministic: bool, dataflow: str,
               num_threads: int) -> tuple[Tensor, Tensor]:
    """Varlen forward: (out (total_q, Hq, D), lse (Hq, total_q))."""
    return _fwd_impl(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                     top_left, window_left, window_right, softcap, dataflow, num_threads)


@fwd.register_fake
def _(q, k, v, *args):
    return torch.empty_like(q), q.new_empty(lse_shape(q, False), dtype=torch.float32)


@varlen_fwd.register_fake
def _(q, k, v, *args):
    return torch.empty_like(q), q.new_empty(lse_shape(q, True), dtype=torch.float32)


# ---- backward --------------------------------------------------------------------------------------------


def _bwd_impl(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, softmax_scale, causal, top_left, window_left,
              window_right, softcap, deterministic, num_threads):
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    with _on_device(q):
        _C.backward(_capsule(dout), _capsule(q), _capsule(k), _capsule(v), _capsule(out), _capsule(lse),
                    _capsule(dq), _capsule(dk), _capsule(dv), _cap(cu_q), _cap(cu_k), max_q, max_k, softmax_scale,
                    causal, top_left, window_left, window_right, softcap, deterministic, _threads(q, num_threads),
                    _stream(q))
    return dq, dk, dv


@torch.library.custom_op("flatattn::bwd", mutates_args=(), device_types=("cpu", "cuda"))
def bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, softmax_scale: Optional[float],
        causal: bool, top_left: bool, window_left: int, window_right: int, softcap: float, deterministic: bool,
        num_threads: int) -> tuple[Tensor, Tensor, Tensor]:
    """Batched backward: (dq, dk, dv)."""
    return _bwd_impl(dout, q, k, v, out, lse, None, None, 0, 0, softmax_scale, causal, top_left, window_left,
                     window_right, softcap, deterministic, num_threads)


@torch.library.custom_op("flatattn::varlen_bwd", mutates_args=(), device_types=("cpu", "cuda"))
def varlen_bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, cu_seqlens_q: Tensor,
               cu_seqlens_k: Tensor, max_seqlen_q: int, max_seqlen_k: int, softmax_scale: Optional[float],
               causal: bool, top_left: bool, window_left: int, window_right: int, softcap: float,
               deterministic: bool, num_threads: int) -> tuple[Tensor, Tensor, Tensor]:
    """Varlen backward: (dq, dk, dv)."""
    return _bwd_impl(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                     softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic, num_threads)


@bwd.register_fake
def _(dout, q, k, v, *args):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


@varlen_bwd.register_fake
def _(dout, q, k, v, *args):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


# ---- autograd --------------------------------------------------------------------------------------------


def _last_dim_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _fwd_setup_context(ctx, inputs, output):
    q, k, v, *opts = inputs  # softmax_scale, causal, top_left, wl, wr, softcap, deterministic, dataflow, threads
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.opts = opts[:7] + opts[8:]  # the backward's options: drop dataflow
    ctx.mark_non_differentiable(lse)


def _fwd_backward(ctx, dout, dlse):
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = torch.ops.flatattn.bwd.default(_last_dim_contiguous(dout), q, k, v, out, lse, *ctx.opts)
    return (dq, dk, dv) + (None,) * 9


def _varlen_setup_context(ctx, inputs, output):
    q, k, v, cu_q, cu_k, max_q, max_k, *opts = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
    ctx.max = (max_q, max_k)
    ctx.opts = opts[:7] + opts[8:]
    ctx.mark_non_differentiable(lse)


def _varlen_backward(ctx, dout, dlse):
    q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
    dq, dk, dv = torch.ops.flatattn.varlen_bwd.default(_last_dim_contiguous(dout), q, k, v, out, lse, cu_q, cu_k,
                                                       *ctx.max, *ctx.opts)
    return (dq, dk, dv) + (None,) * 13


fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup_context)
varlen_fwd.register_autograd(_varlen_backward, setup_context=_varlen_setup_context)

_fwd_op = torch.ops.flatattn.fwd.default
_varlen_fwd_op = torch.ops.flatattn.varlen_fwd.default
_bwd_op = torch.ops.flatattn.bwd.default
_varlen_bwd_op = torch.ops.flatattn.varlen_bwd.default


# ---- Python entry points used by the public APIs --------------------------------------------------------


def attention(q, k, v, *, softmax_scale=None, causal=False, top_left=False, window_left=-1, window_right=-1,
              softcap=0.0, deterministic=False, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0,
              max_seqlen_k=0, dataflow="auto", num_threads=0):
    """(out, lse) through the custom ops (autograd-capable). Batched unless cu_seqlens are given."""
    if softmax_scale is not None:
        softmax_scale = float(softmax_scale)
    if cu_seqlens_q is None and cu_seqlens_k is None:
        return _fwd_op(q, k, v, softmax_scale, bool(causal), bool(top_left), int(window_left), int(window_right),
                       float(softcap), bool(deterministic), dataflow, int(num_threads))
    return _varlen_fwd_op(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                          bool(causal), bool(top_left), int(window_left), int(window_right), float(softcap),
                          bool(deterministic), dataflow, int(num_threads))


def attention_backward(dout, q, k, v, out, lse, *, softmax_scale=None, causal=False, top_left=False,
                       window_left=-1, window_right=-1, softcap=0.0, deterministic=False, cu_seqlens_q=None,
                       cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0, num_threads=0):
    """(dq, dk, dv) through the custom ops."""
    if softmax_scale is not None:
        softmax_scale = float(softmax_scale)
    if cu_seqlens_q is None and cu_seqlens_k is None:
        return _bwd_op(dout, q, k, v, out, lse, softmax_scale, bool(causal), bool(top_left), int(window_left),
                       int(window_right), float(softcap), bool(deterministic), int(num_threads))
    return _varlen_bwd_op(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                          softmax_scale, bool(causal), bool(top_left), int(window_left), int(window_right),
                          float(softcap), bool(deterministic), int(num_threads))
