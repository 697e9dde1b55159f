"""PyTorch custom ops: flatattn::fwd, flatattn::bwd, flatattn::varlen_fwd, flatattn::varlen_bwd (the plain
options), flatattn::variant_fwd / variant_bwd (ALiBi, sinks, an additive bias, block-sparse lists, with or without
cu_seqlens) and flatattn::fwd_kvcache.

Registered with torch.library (torch >= 2.4) with fake kernels and autograd, so they work under
``torch.compile(fullgraph=True)`` without graph breaks and inside CUDA-graph capture. The extension does not
link libtorch: tensors reach it as DLPack capsules (no copy) and CUDA work is queued on the caller's current
stream, so the package does not depend on the torch ABI.

Layouts are the FlashAttention ones: q (B, Nq, Hq, D), k/v (B, Nk, Hkv, D), any strides with the last dim
contiguous; out is allocated like q (``torch.empty_like``: a (B, H, N, D)-major q gives a (B, H, N, D)-major
out), lse (B, Hq, Nq) float32. Varlen: q (total_q, Hq, D), lse (Hq, total_q). The lse output is not
differentiable (marked so): gradients flow through out only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _C
from ._arrays import lse_shape

__all__ = ["attention", "attention_backward", "attention_ext", "attention_bias", "variant_forward", "variant_backward",
           "attention_kvcache"]

try:
    _capsule = torch._C._to_dlpack  # C-level DLPack export: ~0.4 us vs ~4 us for Tensor.__dlpack__
except AttributeError:  # pragma: no cover
    from torch.utils.dlpack import to_dlpack as _capsule

_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _call(fn, q, num_threads, *args, **kw):
    """Calls the extension with the stream of q's device (on q's GPU when it is not current). num_threads is
    passed through: 0 means all hardware threads on every path (as flatattn.Options.num_threads), not torch's
    thread count."""
    if q.device.type != "cuda":
        return fn(*args, num_threads, 0, **kw)
    index = q.device.index
    if index != torch.cuda.current_device():
        with torch.cuda.device(index):
            return _call(fn, q, num_threads, *args, **kw)
    stream = _raw_stream(index) if _raw_stream is not None else torch.cuda.current_stream().cuda_stream
    return fn(*args, num_threads, stream, **kw)


def _cap(t):
    return None if t is None else _capsule(t)


# ---- schemas ---------------------------------------------------------------------------------------------
# Defined with torch.library.Library rather than torch.library.custom_op: the custom_op wrappers (argument
# re-binding, generated autograd.Function plumbing) cost ~50 us per call at 12 arguments, the plain dispatcher
# ~2 us. The registrations are the same ones custom_op makes: a CPU and a CUDA kernel, a fake kernel, and an
# Autograd kernel that wraps an autograd.Function (below), so torch.compile and opcheck see an ordinary op.

_OPTS = ("float? softmax_scale, bool causal, bool top_left, int window_left, int window_right, float softcap, "
         "bool deterministic, float dropout_p, int dropout_seed, int dropout_offset")
_NOPTS = 10  # the options of _OPTS; dataflow and num_threads follow them in the forward schemas
_SCHEMAS = {
    "fwd": f"fwd(Tensor q, Tensor k, Tensor v, {_OPTS}, str dataflow, int num_threads) -> (Tensor out, Tensor lse)",
    "varlen_fwd": ("varlen_fwd(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens_q, Tensor cu_seqlens_k, "
                   f"SymInt max_seqlen_q, SymInt max_seqlen_k, {_OPTS}, str dataflow, int num_threads) "
                   "-> (Tensor out, Tensor lse)"),
    "bwd": (f"bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, {_OPTS}, int num_threads) "
            "-> (Tensor dq, Tensor dk, Tensor dv)"),
    "varlen_bwd": ("varlen_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
                   "Tensor cu_seqlens_q, Tensor cu_seqlens_k, SymInt max_seqlen_q, SymInt max_seqlen_k, "
                   f"{_OPTS}, int num_threads) -> (Tensor dq, Tensor dk, Tensor dv)"),
}
_lib = torch.library.Library("flatattn", "DEF")
for _schema in _SCHEMAS.values():
    _lib.define(_schema)


# ---- kernels (CPU and CUDA) ------------------------------------------------------------------------------


def _call_dropout(fn, q, num_threads, dropout, *args):
    """_call with dropout's (p, seed, offset) as the extension's trailing keyword arguments."""
    p, seed, offset = dropout
    if not p:
        return _call(fn, q, num_threads, *args)
    return _call(lambda *a: fn(*a[:-2], a[-2], a[-1], dropout_p=p, seed=seed, offset=offset), q, num_threads,
                 *args)


def _fwd_impl(q, k, v, cu_q, cu_k, max_q, max_k, softmax_scale, causal, top_left, window_left, window_right,
              softcap, dropout, dataflow, num_threads):
    out = torch.empty_like(q)
    lse = q.new_empty(lse_shape(q, cu_q is not None), dtype=torch.float32)
    _call_dropout(_C.forward, q, num_threads, dropout, _capsule(q), _capsule(k), _capsule(v), _capsule(out),
                  _capsule(lse), _cap(cu_q), _cap(cu_k), max_q, max_k, softmax_scale, causal, top_left, window_left,
                  window_right, softcap, dataflow)
    return out, lse


def _fwd_kernel(q, k, v, softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic,
                dropout_p, dropout_seed, dropout_offset, dataflow, num_threads):
    return _fwd_impl(q, k, v, None, None, 0, 0, softmax_scale, causal, top_left, window_left, window_right, softcap,
                     (dropout_p, dropout_seed, dropout_offset), dataflow, num_threads)


def _varlen_fwd_kernel(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                       top_left, window_left, window_right, softcap, deterministic, dropout_p, dropout_seed,
                       dropout_offset, dataflow, num_threads):
    return _fwd_impl(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                     top_left, window_left, window_right, softcap, (dropout_p, dropout_seed, dropout_offset), dataflow,
                     num_threads)


def _bwd_impl(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, softmax_scale, causal, top_left, window_left,
              window_right, softcap, deterministic, dropout, num_threads):
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    _call_dropout(_C.backward, q, num_threads, dropout, _capsule(dout), _capsule(q), _capsule(k), _capsule(v),
                  _capsule(out), _capsule(lse), _capsule(dq), _capsule(dk), _capsule(dv), _cap(cu_q), _cap(cu_k),
                  max_q, max_k, softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic)
    return dq, dk, dv


def _bwd_kernel(dout, q, k, v, out, lse, softmax_scale, causal, top_left, window_left, window_right, softcap,
                deterministic, dropout_p, dropout_seed, dropout_offset, num_threads):
    return _bwd_impl(dout, q, k, v, out, lse, None, None, 0, 0, softmax_scale, causal, top_left, window_left,
                     window_right, softcap, deterministic, (dropout_p, dropout_seed, dropout_offset), num_threads)


def _varlen_bwd_kernel(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                       softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic, dropout_p,
                       dropout_seed, dropout_offset, num_threads):
    return _bwd_impl(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                     softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic,
                     (dropout_p, dropout_seed, dropout_offset), num_threads)


for _name, _kernel in (("fwd", _fwd_kernel), ("varlen_fwd", _varlen_fwd_kernel), ("bwd", _bwd_kernel),
                       ("varlen_bwd", _varlen_bwd_kernel)):
    _lib.impl(_name, _kernel, "CPU")
    _lib.impl(_name, _kernel, "CUDA")


# ---- fake kernels (shapes and strides only: torch.compile, meta tensors) -------------------------------------


@torch.library.register_fake("flatattn::fwd", lib=_lib)
def _(q, k, v, *args):
    return torch.empty_like(q), q.new_empty(lse_shape(q, False), dtype=torch.float32)


@torch.library.register_fake("flatattn::varlen_fwd", lib=_lib)
def _(q, k, v, *args):
    return torch.empty_like(q), q.new_empty(lse_shape(q, True), dtype=torch.float32)


@torch.library.register_fake("flatattn::bwd", lib=_lib)
def _(dout, q, k, v, *args):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


@torch.library.register_fake("flatattn::varlen_bwd", lib=_lib)
def _(dout, q, k, v, *args):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


_fwd_op = torch.ops.flatattn.fwd.default
_varlen_fwd_op = torch.ops.flatattn.varlen_fwd.default
_bwd_op = torch.ops.flatattn.bwd.default
_varlen_bwd_op = torch.ops.flatattn.varlen_bwd.default


# ---- autograd ----------------------------------------------------------------------------------------------
# The forward saves q, k, v, out, lse; the backward is the bwd op. lse is marked non-differentiable.


def _last_dim_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


_below_autograd = torch._C._AutoDispatchBelowAutograd


_is_compiling = torch.compiler.is_compiling
_torch_function_mode = torch._C._is_torch_function_mode_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack
_functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
import torch.autograd.profiler as _profiler  # noqa: E402


def _plain(*ts):
    """True when calling a kernel directly is indistinguishable from dispatching its op: eager mode, plain CPU or
    CUDA tensors, no torch-function or dispatch mode (fake tensors, flop counters), no functorch transform, no
    profiler (which should see the op by name). Saves a dispatcher round trip (~6 us with 12 arguments)."""
    if _is_compiling() or _torch_function_mode() or _dispatch_modes() or _profiler._is_profiler_enabled:
        return False
    for t in ts:
        if type(t) is not Tensor or not (t.is_cpu or t.is_cuda) or _functorch_wrapped(t):
            return False
    return True


def _run_fwd(q, k, v, opts):
    """The forward below autograd: the kernel itself when that is safe, else through the dispatcher."""
    if _plain(q, k, v):
        return _fwd_kernel(q, k, v, *opts)
    with _below_autograd():
        return _fwd_op(q, k, v, *opts)


def _run_varlen_fwd(args):
    if _plain(*args[:5]):
        return _varlen_fwd_kernel(*args)
    with _below_autograd():
        return _varlen_fwd_op(*args)


class _Fwd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, *opts):  # softmax_scale .. dropout_offset (_NOPTS), dataflow, num_threads
        out, lse = _run_fwd(q, k, v, opts)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.opts = opts[:_NOPTS] + opts[_NOPTS + 1:]
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        args = (_last_dim_contiguous(dout), q, k, v, out, lse, *ctx.opts)
        dq, dk, dv = _bwd_kernel(*args) if _plain(*args[:6]) and not torch.is_grad_enabled() else _bwd_op(*args)
        return (dq, dk, dv) + (None,) * (_NOPTS + 2)


class _VarlenFwd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, *opts):
        out, lse = _run_varlen_fwd((q, k, v, cu_q, cu_k, max_q, max_k, *opts))
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
        ctx.max = (max_q, max_k)
        ctx.opts = opts[:_NOPTS] + opts[_NOPTS + 1:]
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        args = (_last_dim_contiguous(dout), q, k, v, out, lse, cu_q, cu_k, *ctx.max, *ctx.opts)
        plain = _plain(*args[:8]) and not torch.is_grad_enabled()
        dq, dk, dv = _varlen_bwd_kernel(*args) if plain else _varlen_bwd_op(*args)
        return (dq, dk, dv) + (None,) * (4 + _NOPTS + 2)


def _needs_grad(q, k, v):
    return torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)


def _fwd_autograd(q, k, v, *opts):
    if _needs_grad(q, k, v):
        return _Fwd.apply(q, k, v, *opts)
    return _run_fwd(q, k, v, opts)


def _varlen_fwd_autograd(*args):
    if _needs_grad(*args[:3]):
        return _VarlenFwd.apply(*args)
    return _run_varlen_fwd(args)


def _no_double_backward(op):
    def kernel(*args):
        if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
            raise NotImplementedError(f"flatattn: {op} is not differentiable (no double backward)")
        with _below_autograd():
            return getattr(torch.ops.flatattn, op).default(*args)
    return kernel


_lib.impl("fwd", _fwd_autograd, "Autograd")
_lib.impl("varlen_fwd", _varlen_fwd_autograd, "Autograd")
_lib.impl("bwd", _no_double_backward("bwd"), "Autograd")
_lib.impl("varlen_bwd", _no_double_backward("varlen_bwd"), "Autograd")


# ---- Python entry points used by the public APIs --------------------------------------------------------
# In eager mode they skip the dispatcher round trips (~6 us each with 12 arguments): with grad they apply the
# autograd.Function directly, without grad they run the kernel (see _plain). Under torch.compile, and under
# any mode, they call the op as it is, and the compiler sees one opaque op with its registered autograd.


def forward_opts(q, k, v, opts, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0):
    """(out, lse); opts = (softmax_scale: float|None, causal, top_left, window_left, window_right, softcap: float,
    deterministic, dropout_p: float, dropout_seed: int, dropout_offset: int, dataflow: str, num_threads), already of
    the schema's types."""
    if cu_seqlens_q is None and cu_seqlens_k is None:
        if _is_compiling():
            return _fwd_op(q, k, v, *opts)
        if _needs_grad(q, k, v):
            return _Fwd.apply(q, k, v, *opts)
        return _run_fwd(q, k, v, opts)
    args = (q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *opts)
    if _is_compiling():
        return _varlen_fwd_op(*args)
    if _needs_grad(q, k, v):
        return _VarlenFwd.apply(*args)
    return _run_varlen_fwd(args)


def attention(q, k, v, *, softmax_scale=None, causal=False, top_left=False, window_left=-1, window_right=-1,
              softcap=0.0, deterministic=False, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0,
              max_seqlen_k=0, dataflow="auto", num_threads=0, dropout_p=0.0, dropout_seed=0, dropout_offset=0):
    """(out, lse) through the ops (autograd-capable). Batched unless cu_seqlens are given. Dropout: the
    backward regenerates the forward's mask from (dropout_p, dropout_seed, dropout_offset), ints in [0, 2^63)."""
    opts = (None if softmax_scale is None else float(softmax_scale), bool(causal), bool(top_left), int(window_left),
            int(window_right), float(softcap), bool(deterministic), float(dropout_p), int(dropout_seed),
            int(dropout_offset), dataflow, int(num_threads))
    return forward_opts(q, k, v, opts, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)


def attention_backward(dout, q, k, v, out, lse, *, softmax_scale=None, causal=False, top_left=False,
                       window_left=-1, window_right=-1, softcap=0.0, deterministic=False, cu_seqlens_q=None,
                       cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0, num_threads=0, dropout_p=0.0,
                       dropout_seed=0, dropout_offset=0):
    """(dq, dk, dv) through the ops."""
    if softmax_scale is not None:
        softmax_scale = float(softmax_scale)
    opts = (softmax_scale, bool(causal), bool(top_left), int(window_left), int(window_right), float(softcap),
            bool(deterministic), float(dropout_p), int(dropout_seed), int(dropout_offset), int(num_threads))
    if cu_seqlens_q is None and cu_seqlens_k is None:
        return _bwd_op(dout, q, k, v, out, lse, *opts)
    return _varlen_bwd_op(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *opts)


# ---- the variant ops: ALiBi, attention sinks, an additive bias with gradient, block-sparse lists -------------
# One op pair serves every feature beyond the plain ops' options (those keep their own schemas and eager fast
# paths above, which the drop-ins call most). variant_fwd / variant_bwd take optional cu_seqlens (batched when
# absent), the ALiBi slopes (Hq) or (B, Hq) and the sinks (Hq), both float32, the bias (broadcastable to
# (B, Hq, Nq, Nk), as_bias's form), and the block sizes with flatattn::BlockSparse's ten int32 tensors as one list
# (kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices, q_num_blocks, q_indices, full_q_num_blocks,
# full_q_indices, mask_bits, mask_block_offsets; None where absent; an empty list: not block-sparse), all on q's
# device. The list may carry two more tensors after the ten (None where absent): local + global attention's
# global_positions and global_counts (flatattn::LocalGlobal; the ten are then all None without block lists).
# variant_bwd also returns dsinks and dbias (empty when absent or not wanted); the autograd Function hands them to
# the sinks and the bias (autograd reduces dbias to the caller's broadcast shape). No gradient for the slopes, the
# block lists or the global positions.

_VAR_ARGS = "Tensor? alibi_slopes, Tensor? sinks, Tensor? bias, int block_q, int block_kv, Tensor?[] block_sparse"
# Options::dropout_row0/col0 (context parallelism: the call's mask is the whole sequence's at that position); last,
# with defaults, so the calls without them are unchanged.
# Then Options::dropout_batch0/head0/heads (the stream's sequence and head numbering: ring attention over packed
# documents, Ulysses' head shards).
_POS = ("int dropout_row0=0, int dropout_col0=0, int dropout_batch0=0, int dropout_head0=0, "
        "int dropout_heads=0")
_VAR_SCHEMAS = {
    "variant_fwd": ("variant_fwd(Tensor q, Tensor k, Tensor v, Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, "
                    f"SymInt max_seqlen_q, SymInt max_seqlen_k, {_VAR_ARGS}, {_OPTS}, str dataflow, int num_threads, "
                    f"{_POS}) -> (Tensor out, Tensor lse)"),
    "variant_bwd": ("variant_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
                    "Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, SymInt max_seqlen_q, SymInt max_seqlen_k, "
                    f"{_VAR_ARGS}, bool want_dbias, {_OPTS}, int num_threads, {_POS}) "
                    "-> (Tensor dq, Tensor dk, Tensor dv, Tensor dsinks, Tensor dbias)"),
}
for _schema in _VAR_SCHEMAS.values():
    _lib.define(_schema)


def _variant_kw(alibi_slopes, sinks, bias, block_q, block_kv, block_sparse, dropout_p, dropout_seed, dropout_offset,
                row0=0, col0=0, slot=(0, 0, 0)):
    """The extension's keyword arguments for the features that are present."""
    kw = dict(dropout_p=float(dropout_p), seed=int(dropout_seed), offset=int(dropout_offset))
    if row0 or col0:
        kw.update(dropout_row0=int(row0), dropout_col0=int(col0))
    if any(slot):
        kw["dropout_slot"] = [int(x) for x in slot]
    if alibi_slopes is not None:
        kw["alibi_slopes"] = _capsule(alibi_slopes)
    if sinks is not None:
        kw["sinks"] = _capsule(sinks)
    if bias is not None:
        kw["bias"] = _capsule(bias)
    lists, lg = list(block_sparse[:10]), list(block_sparse[10:])
    if any(t is not None for t in lists):
        kw["block_sparse"] = (int(block_q), int(block_kv), *(_cap(t) for t in lists))
    if lg and lg[0] is not None:  # local + global: (global_positions, global_counts) after the ten lists
        kw["global_positions"] = _cap(lg[0])
        kw["global_counts"] = _cap(lg[1]) if len(lg) > 1 else None
    return kw


def _dsinks_like(q, sinks):
    return torch.empty_like(sinks) if sinks is not None else q.new_empty((0,), dtype=torch.float32)


def _dbias_like(q, bias, want):
    """dbias for variant_bwd: the bias's shape and dtype when wanted (and a bias given), else an empty tensor."""
    if bias is None or not want:
        return q.new_empty((0,))
    return torch.empty(bias.shape, dtype=bias.dtype, device=bias.device)


def _variant_fwd_kernel(q, k, v, cu_q, cu_k, max_q, max_k, alibi_slopes, sinks, bias, block_q, block_kv,
                        block_sparse, softmax_scale, causal, top_left, window_left, window_right, softcap,
                        deterministic, dropout_p, dropout_seed, dropout_offset, dataflow, num_threads, dropout_row0=0,
                        dropout_col0=0, dropout_batch0=0, dropout_head0=0, dropout_heads=0):
    out = torch.empty_like(q)
    lse = q.new_empty(lse_shape(q, cu_q is not None), dtype=torch.float32)
    _call(_C.forward, q, num_threads, _capsule(q), _capsule(k), _capsule(v), _capsule(out), _capsule(lse),
          _cap(cu_q), _cap(cu_k), max_q, max_k, softmax_scale, causal, top_left, window_left, window_right, softcap,
          dataflow, **_variant_kw(alibi_slopes, sinks, bias, block_q, block_kv, block_sparse, dropout_p, dropout_seed,
                                  dropout_offset, dropout_row0, dropout_col0,
                                  (dropout_batch0, dropout_head0, dropout_heads)))
    return out, lse


def _variant_bwd_kernel(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, alibi_slopes, sinks, bias, block_q,
                        block_kv, block_sparse, want_dbias, softmax_scale, causal, top_left, window_left, window_right,
                        softcap, deterministic, dropout_p, dropout_seed, dropout_offset, num_threads, dropout_row0=0,
                        dropout_col0=0, dropout_batch0=0, dropout_head0=0, dropout_heads=0):
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dsinks = _dsinks_like(q, sinks)
    want_dbias = bool(want_dbias) and bias is not None
    dbias = _dbias_like(q, bias, want_dbias)
    kw = _variant_kw(alibi_slopes, sinks, bias, block_q, block_kv, block_sparse, dropout_p, dropout_seed,
                     dropout_offset, dropout_row0, dropout_col0, (dropout_batch0, dropout_head0, dropout_heads))
    if sinks is not None:
        kw["dsinks"] = _capsule(dsinks)
    if want_dbias:
        kw["dbias"] = _capsule(dbias)
    _call(_C.backward, q, num_threads, _capsule(dout), _capsule(q), _capsule(k), _capsule(v), _capsule(out),
          _capsule(lse), _capsule(dq), _capsule(dk), _capsule(dv), _cap(cu_q), _cap(cu_k), max_q, max_k,
          softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic, **kw)
    return dq, dk, dv, dsinks, dbias


for _name, _kernel in (("variant_fwd", _variant_fwd_kernel), ("variant_bwd", _variant_bwd_kernel)):
    _lib.impl(_name, _kernel, "CPU")
    _lib.impl(_name, _kernel, "CUDA")


@torch.library.register_fake("flatattn::variant_fwd", lib=_lib)
def _(q, k, v, cu_q, *args):
    return torch.empty_like(q), q.new_empty(lse_shape(q, cu_q is not None), dtype=torch.float32)


@torch.library.register_fake("flatattn::variant_bwd", lib=_lib)
def _(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, alibi_slopes, sinks, bias, block_q, block_kv, block_sparse,
      want_dbias, *args):
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), _dsinks_like(q, sinks),
            _dbias_like(q, bias, bool(want_dbias)))


_variant_fwd_op = torch.ops.flatattn.variant_fwd.default
_variant_bwd_op = torch.ops.flatattn.variant_bwd.default

# variant_fwd's arguments: q, k, v (0-2), cu_q, cu_k, max_q, max_k (3-6), alibi_slopes, sinks, bias (7-9),
# block_q, block_kv, block_sparse (10-12), then the _NOPTS options, dataflow and num_threads.
_SINKS, _BIAS, _NFIXED = 8, 9, 13


class _VariantFwd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *args):
        with _below_autograd():
            out, lse = _variant_fwd_op(*args)
        q, k, v, cu_q, cu_k, max_q, max_k, alibi_slopes, sinks, bias, block_q, block_kv, block_sparse = args[:_NFIXED]
        opts = args[_NFIXED:]
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, alibi_slopes, sinks, bias, *block_sparse)
        ctx.shape = (max_q, max_k, block_q, block_kv)
        ctx.opts = opts[:_NOPTS] + opts[_NOPTS + 1:]  # without dataflow (num_threads and the dropout position stay)
        ctx.nargs = len(args)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse, cu_q, cu_k, alibi_slopes, sinks, bias, *block_sparse = ctx.saved_tensors
        max_q, max_k, block_q, block_kv = ctx.shape
        want_sinks = sinks is not None and ctx.needs_input_grad[_SINKS]
        want_dbias = bias is not None and ctx.needs_input_grad[_BIAS]
        dq, dk, dv, dsinks, dbias = _variant_bwd_op(_last_dim_contiguous(dout), q, k, v, out, lse, cu_q, cu_k, max_q,
                                                    max_k, alibi_slopes, sinks, bias, block_q, block_kv, block_sparse,
                                                    want_dbias, *ctx.opts)
        grads = [dq, dk, dv] + [None] * (ctx.nargs - 3)
        grads[_SINKS] = dsinks if want_sinks else None
        grads[_BIAS] = dbias if want_dbias else None
        return tuple(grads)


def _variant_fwd_autograd(*args):
    q, k, v = args[:3]
    sinks, bias = args[_SINKS], args[_BIAS]
    grads = [t for t in (q, k, v, sinks, bias) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in grads):
        return _VariantFwd.apply(*args)
    with _below_autograd():
        return _variant_fwd_op(*args)


_lib.impl("variant_fwd", _variant_fwd_autograd, "Autograd")
_lib.impl("variant_bwd", _no_double_backward("variant_bwd"), "Autograd")


def _f32(t):
    """The features' per-head tensors as the kernels take them: float32 (a differentiable conversion)."""
    return t if t is None or t.dtype == torch.float32 else t.float()


def as_bias(bias, batch, hq, nq, nk):
    """A bias broadcastable to (B, Hq, Nq, Nk) in the form the kernels take (differentiable view ops only, so
    autograd reduces the gradient back to the caller's shape): leading dims added as size 1 up to rank 4;
    batch, head and query dims that are broadcast by stride 0 narrowed to size 1 (the library then sums their
    gradient instead of writing it B Hq times); a key dim of size 1 expanded and a non-contiguous last dim
    copied (the kernels read rows of Nk contiguous elements). Integer or complex dtypes are left for the
    library to refuse by name."""
    if bias.dim() > 4:
        return bias  # refused by name in the library (rank 4)
    while bias.dim() < 4:
        bias = bias.unsqueeze(0)
    for d, n in ((0, batch), (1, hq), (2, nq)):
        if bias.shape[d] > 1 and bias.stride(d) == 0:
            bias = bias.narrow(d, 0, 1)
    if bias.shape[3] == 1 and nk != 1:
        bias = bias.expand(*bias.shape[:3], nk)
    if bias.shape[3] > 1 and bias.stride(3) != 1:
        bias = bias.contiguous()
    return bias


def _opts_fwd(softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic, dropout_p,
              dropout_seed, dropout_offset, dataflow, num_threads):
    return (None if softmax_scale is None else float(softmax_scale), bool(causal), bool(top_left), int(window_left),
            int(window_right), float(softcap), bool(deterministic), float(dropout_p), int(dropout_seed),
            int(dropout_offset), dataflow, int(num_threads))


def _pos_args(row0, col0, slot):
    """The schema's trailing dropout position arguments (none when all are 0, so plain calls stay unchanged)."""
    vals = (int(row0), int(col0), *(int(x) for x in slot))
    if not any(vals[2:]):
        vals = vals[:2]
    return vals if any(vals) else ()


def backward_into(dout, q, k, v, out, lse, dq, dk, dv, opts, *, dropout_row0=0, dropout_col0=0,
                  dropout_slot=(0, 0, 0)):
    """flatattn::backward writing into the given dq, dk, dv (no autograd, no custom op; batched q, k, v). opts: the
    variant bwd schema's (_NOPTS options, num_threads). With 16-bit inputs, dq, dk, dv may be float32 (all three):
    the CPU engine and the CUDA kernels then store the fp32 values they would round (ring attention sums them over
    the hops and rounds once). On CUDA that needs D a multiple of 8 and 16-byte aligned rows; else flatattn.Error
    names dq."""
    scale, causal, top_left, wl, wr, softcap, deterministic, p, seed, offset, num_threads = opts
    kw = _variant_kw(None, None, None, 0, 0, [], p, seed, offset, dropout_row0, dropout_col0, dropout_slot)
    _call(_C.backward, q, num_threads, _capsule(dout), _capsule(q), _capsule(k), _capsule(v), _capsule(out),
          _capsule(lse), _capsule(dq), _capsule(dk), _capsule(dv), None, None, 0, 0, scale, causal, top_left, wl, wr,
          softcap, deterministic, **kw)
    return dq, dk, dv


def _lists(block_sparse, global_positions=None, global_counts=None):
    """(block_q, block_kv, the op's Tensor?[]): the ten BlockSparse tensors, then global_positions and
    global_counts when local + global is asked for."""
    bq, bkv, lists = (0, 0, []) if block_sparse is None else (int(block_sparse.block_q), int(block_sparse.block_kv),
                                                               block_sparse.tensors())
    if global_positions is not None:
        lists = (lists or [None] * 10) + [global_positions, global_counts]
    return bq, bkv, lists


def variant_forward(q, k, v, opts, *, alibi_slopes=None, sinks=None, bias=None, block_sparse=None, cu_seqlens_q=None,
                    cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0, dropout_row0=0, dropout_col0=0,
                    dropout_slot=(0, 0, 0), global_positions=None, global_counts=None):
    """(out, lse) through variant_fwd; opts as forward_opts's (the _NOPTS options, dataflow, num_threads);
    block_sparse a flatattn.BlockSparse of int32 tensors on q's device, or None. Autograd reaches q, k, v, the
    sinks and the bias. dropout_row0/col0: Options' (the dropout mask of the whole sequence at that position;
    col0 a multiple of 64). dropout_slot: Options' (dropout_batch0, dropout_head0, dropout_heads).
    global_positions (B', G) / global_counts (B') int32 on q's device: local + global attention (no gradient)."""
    bq, bkv, lists = _lists(block_sparse, global_positions, global_counts)
    pos = _pos_args(dropout_row0, dropout_col0, dropout_slot)
    return _variant_fwd_op(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, _f32(alibi_slopes),
                           _f32(sinks), bias, bq, bkv, lists, *opts, *pos)


def variant_backward(dout, q, k, v, out, lse, opts, *, alibi_slopes=None, sinks=None, bias=None, want_dbias=False,
                     block_sparse=None, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0,
                     dropout_row0=0, dropout_col0=0, dropout_slot=(0, 0, 0), global_positions=None,
                     global_counts=None):
    """(dq, dk, dv, dsinks, dbias) through variant_bwd (dsinks and dbias empty when absent or not wanted); opts as
    the bwd schema's (_NOPTS options, num_threads); dropout_row0/col0 and dropout_slot as variant_forward's."""
    bq, bkv, lists = _lists(block_sparse, global_positions, global_counts)
    return _variant_bwd_op(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                           _f32(alibi_slopes), _f32(sinks), bias, bq, bkv, lists, bool(want_dbias), *opts,
                           *_pos_args(dropout_row0, dropout_col0, dropout_slot))


def attention_ext(q, k, v, *, alibi_slopes=None, sinks=None, softmax_scale=None, causal=False, top_left=False,
                  window_left=-1, window_right=-1, softcap=0.0, deterministic=False, cu_seqlens_q=None,
                  cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0, dataflow="auto", num_threads=0, dropout_p=0.0,
                  dropout_seed=0, dropout_offset=0):
    """(out, lse) with ALiBi slopes and/or attention sinks (flatattn.forward's semantics); autograd reaches q, k, v
    and the sinks (dsinks: -sum_i e^(sink - LSE_i) rowsum(dout_i * out_i))."""
    opts = _opts_fwd(softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic, dropout_p,
                     dropout_seed, dropout_offset, dataflow, num_threads)
    return variant_forward(q, k, v, opts, alibi_slopes=alibi_slopes, sinks=sinks, cu_seqlens_q=cu_seqlens_q,
                           cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k)


def attention_bias(q, k, v, bias, *, sinks=None, softmax_scale=None, causal=False, top_left=False, window_left=-1,
                   window_right=-1, softcap=0.0, deterministic=False, cu_seqlens_q=None, cu_seqlens_k=None,
                   max_seqlen_q=0, max_seqlen_k=0, dataflow="auto", num_threads=0, dropout_p=0.0, dropout_seed=0,
                   dropout_offset=0):
    """(out, lse) with an additive bias (flatattn.forward's semantics: S = scale q.k + bias before the mask);
    autograd reaches q, k, v, the bias (dbias = dS summed over its broadcast dims) and the sinks."""
    opts = _opts_fwd(softmax_scale, causal, top_left, window_left, window_right, softcap, deterministic, dropout_p,
                     dropout_seed, dropout_offset, dataflow, num_threads)
    return variant_forward(q, k, v, opts, sinks=sinks, bias=bias, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                           max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k)


def stream_scope(q, stream):
    """A context that makes `stream` (a torch.cuda.Stream, an object with .cuda_stream or .ptr, or a raw
    cudaStream_t int) torch's current stream on q's device, so the ops queue their work on it; a null
    context when stream is None or q is not a CUDA tensor."""
    import contextlib

    if stream is None or q.device.type != "cuda":
        return contextlib.nullcontext()
    if not isinstance(stream, torch.cuda.Stream):
        stream = torch.cuda.ExternalStream(int(getattr(stream, "cuda_stream", getattr(stream, "ptr", stream))),
                                           device=q.device)
    return torch.cuda.stream(stream)


# ---- forward_kvcache (flatattn::fwd_kvcache) -------------------------------------------------------------
# Inference over a KV cache (include/flatattn/kvcache.h): k_cache and v_cache are mutated in place (the append),
# which the schema declares (Tensor(a!)), so torch.compile and functionalization order it correctly. No
# autograd (inference). The call allocates only out (and lse when asked; else an empty tensor) and never
# synchronizes: CUDA-graph capturable when cache_seqlens is a tensor.

_lib.define(
    "fwd_kvcache(Tensor q, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor cache_seqlens, Tensor? block_table, "
    "Tensor? cache_batch_idx, Tensor? cache_leftpad, Tensor? k, Tensor? v, Tensor? rotary_cos, Tensor? rotary_sin, "
    "bool rotary_interleaved, Tensor? alibi_slopes, Tensor? sinks, float? softmax_scale, bool causal, "
    "int window_left, int window_right, float softcap, int num_splits, bool return_lse, int num_threads) "
    "-> (Tensor out, Tensor lse)")


def _fwd_kvcache_kernel(q, k_cache, v_cache, cache_seqlens, block_table, cache_batch_idx, cache_leftpad, k, v,
                        rotary_cos, rotary_sin, rotary_interleaved, alibi_slopes, sinks, softmax_scale, causal,
                        window_left, window_right, softcap, num_splits, return_lse, num_threads):
    out = torch.empty_like(q)
    lse = q.new_empty(lse_shape(q, False) if return_lse else (0,), dtype=torch.float32)
    _call(_C.forward_kvcache, q, num_threads, _capsule(q), _capsule(k_cache), _capsule(v_cache), _capsule(out),
          _capsule(lse) if return_lse else None, _capsule(cache_seqlens), _cap(block_table), _cap(cache_batch_idx),
          _cap(cache_leftpad), _cap(k), _cap(v), _cap(rotary_cos), _cap(rotary_sin), rotary_interleaved,
          _cap(alibi_slopes), _cap(sinks), softmax_scale, causal, window_left, window_right, softcap, num_splits)
    return out, lse


_lib.impl("fwd_kvcache", _fwd_kvcache_kernel, "CPU")
_lib.impl("fwd_kvcache", _fwd_kvcache_kernel, "CUDA")


@torch.library.register_fake("flatattn::fwd_kvcache", lib=_lib)
def _(q, k_cache, v_cache, cache_seqlens, block_table, cache_batch_idx, cache_leftpad, k, v, rotary_cos, rotary_sin,
      rotary_interleaved, alibi_slopes, sinks, softmax_scale, causal, window_left, window_right, softcap, num_splits,
      return_lse, num_threads):
    return torch.empty_like(q), q.new_empty(lse_shape(q, False) if return_lse else (0,), dtype=torch.float32)


_fwd_kvcache_op = torch.ops.flatattn.fwd_kvcache.default


def attention_kvcache(q, k_cache, v_cache, cache_seqlens, *, block_table=None, cache_batch_idx=None,
                      cache_leftpad=None, k=None, v=None, rotary_cos=None, rotary_sin=None, rotary_interleaved=False,
                      alibi_slopes=None, sinks=None, softmax_scale=None, causal=False, window_left=-1,
                      window_right=-1, softcap=0.0, num_splits=0, return_lse=False, num_threads=0):
    """forward_kvcache through the custom op: returns (out, lse); lse is an empty tensor unless return_lse."""
    return _fwd_kvcache_op(q, k_cache, v_cache, cache_seqlens, block_table, cache_batch_idx, cache_leftpad, k, v,
                           rotary_cos, rotary_sin, bool(rotary_interleaved), alibi_slopes, sinks,
                           None if softmax_scale is None else float(softmax_scale), bool(causal), int(window_left),
                           int(window_right), float(softcap), int(num_splits), bool(return_lse), int(num_threads))


