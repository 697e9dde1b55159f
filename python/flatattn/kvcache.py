"""Attention over a KV cache (inference): :func:`flash_attn_with_kvcache` with FlashAttention-2's signature and
semantics (``flash_attn_interface.flash_attn_with_kvcache``, flash-attn 2.6), and :func:`forward_kvcache`, the
native call with output buffers. numpy arrays (CPU) and torch tensors (CPU or CUDA) alike; torch goes through
the custom op ``torch.ops.flatattn.fwd_kvcache`` (the caches are declared mutated).

Layouts (FlashAttention's, last dim contiguous):

- q (B, Sq, H, D): the new queries of each sequence (Sq = 1 for decoding; more for speculative decoding or
  chunked prefill);
- k_cache, v_cache: paged (num_blocks, page_block_size, Hk, D) with ``block_table`` int32 (B, max_blocks)
  (any page size >= 1; vLLM's layout), or contiguous (B_cache, seqlen_cache, Hk, D), sequence b in row
  ``cache_batch_idx[b]`` (int32 (B); None: row b). H must be a multiple of Hk (GQA/MQA).
- ``cache_seqlens``: int or int32 (B): tokens already in each cache (None: the whole capacity).
- ``k``, ``v`` (B, Sk_new, Hk, D): appended in place at ``cache_seqlens`` (rotated when ``rotary_cos`` is
  given) before the attention; the caller advances cache_seqlens afterwards.
- ``rotary_cos``, ``rotary_sin`` (max_position, rotary_dim / 2), q's dtype: RoPE (Su et al., RoFormer 2021,
  Sec. 3.4) of q and the new k: pairs (2c, 2c + 1) when ``rotary_interleaved`` (GPT-J; the default, as
  FlashAttention-2) else (c, c + rotary_dim / 2) (GPT-NeoX, Hugging Face Llama). New key t sits at position
  cache_seqlens[b] + t; query i at cache_seqlens[b] + i with causal or a window, else at cache_seqlens[b].
  Needs ``k``/``v`` (cached keys are stored rotated).
- ``cache_leftpad`` int32 (B): the first valid cache position of each sequence (keys before it are ignored).

Attention: keys [cache_leftpad[b], cache_seqlens[b] + Sk_new); the queries are aligned to the end of the keys
(causal: query i sees key j <= i + n_k - Sq); ``window_size=(left, right)``, -1 infinite; ``softcap``;
``alibi_slopes`` float32 (H) or (B, H) (as flash_attn_func); ``softmax_scale`` default 1/sqrt(D).
``num_splits``: 0 lets the library choose the split-KV count, n > 0 forces it (same results within the rule).

Returns ``out`` (B, Sq, H, D), or ``(out, softmax_lse)`` with ``return_softmax_lse=True`` (float32 (B, H, Sq),
natural log).

Errors: :class:`flatattn.FlatattnError` naming the argument, raised before anything is written (the caches
included); from :func:`flash_attn_with_kvcache` also a ``RuntimeError`` as FlashAttention-2 raises. CPU calls
check every metadata value (page indices, lengths against the capacity, cache_batch_idx, leftpad). CUDA calls
read them on the device (include/flatattn/kvcache.h).

Paged prefill (varlen queries, include/flatattn/kvcache.h): :func:`forward_kvcache` with ``cu_seqlens_q``
int32 (B + 1) takes q (total_q, H, D) packed, sequence b's queries rows cu_seqlens_q[b] .. cu_seqlens_q[b+1],
against keys [cache_leftpad[b], cache_seqlens[b]) of the cache (no k/v append, no rotary); causal is aligned
to each sequence's cache end; lse (H, total_q). ``max_seqlen_q`` bounds every query length (0: total_q;
CUDA sizes its grid by it). ``flash_attn_varlen_func(..., block_table=...)`` routes here.
CUDA graphs: with tensor ``cache_seqlens`` the torch call allocates only its outputs and never synchronizes
(an int cache_seqlens or None allocates an int32 tensor, as FlashAttention-2 does).
"""

from __future__ import annotations

from . import _C
from . import _arrays as A
from ._errors import drop_in, error

__all__ = ["flash_attn_with_kvcache", "forward_kvcache"]


def _window(window_size, causal):
    try:
        left, right = (int(w) for w in window_size)
    except (TypeError, ValueError):
        raise error("window_size", repr(window_size), "must be a pair (left, right), -1 = infinite",
                    "pass e.g. window_size=(256, 0)") from None
    return left, (-1 if causal else right)  # FlashAttention: causal implies a right window of 0


def _seqlens(cache_seqlens, q, k_cache, block_table, lib):
    """cache_seqlens as an int32 (B) array of q's library and device."""
    if cache_seqlens is not None and not isinstance(cache_seqlens, int):
        return cache_seqlens
    batch = int(q.shape[0])
    if cache_seqlens is None:  # the whole capacity (FlashAttention-2)
        cap = int(block_table.shape[1]) * int(k_cache.shape[1]) if block_table is not None else int(k_cache.shape[1])
        value = cap
    else:
        value = int(cache_seqlens)
    if lib == "torch":
        import torch

        return torch.full((batch,), value, dtype=torch.int32, device=q.device)
    if lib == "numpy":
        import numpy as np

        return np.full((batch,), value, dtype=np.int32)
    raise error("cache_seqlens", repr(cache_seqlens), f"must be an int32 (B) array for {lib} arrays",
                "pass an int32 array")


def forward_kvcache(q, k_cache, v_cache, cache_seqlens, *, k=None, v=None, rotary_cos=None, rotary_sin=None,
                    rotary_interleaved=False, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                    softmax_scale=None, causal=False, window=(-1, -1), softcap=0.0, alibi_slopes=None, sinks=None,
                    num_splits=0, return_lse=False, num_threads=0, out=None, lse=None, stream=None,
                    return_report=False, cu_seqlens_q=None, max_seqlen_q=0):
    """The native forward_kvcache (include/flatattn/kvcache.h) on numpy, torch or CuPy arrays: appends k/v into
    the caches in place, then attention of q against them. Arguments as :func:`flash_attn_with_kvcache` (module
    docstring) except ``rotary_interleaved`` defaults to False here (the C++ default), ``window=(left, right)``
    as in :func:`flatattn.forward`, ``sinks`` (H) float32 (attention sinks, as flatattn.forward), and output
    buffers ``out`` / ``lse`` may be given. Returns ``(out, lse)`` (lse None unless return_lse), plus the
    :class:`Report` with ``return_report=True``. With ``cu_seqlens_q``: varlen q (total_q, H, D) over the
    cache as it is (paged prefill; module docstring), lse (H, total_q); not through the torch custom op
    (eager calls only)."""
    lib = A.library(q)
    left, right = window
    cache_seqlens = _seqlens(cache_seqlens, q, k_cache, block_table, lib)
    varlen = cu_seqlens_q is not None
    if lib == "torch" and out is None and lse is None and not return_report and not varlen:
        from . import torch_ops

        with torch_ops.stream_scope(q, stream):
            o, l = torch_ops.attention_kvcache(
                q, k_cache, v_cache, cache_seqlens, block_table=block_table, cache_batch_idx=cache_batch_idx,
                cache_leftpad=cache_leftpad, k=k, v=v, rotary_cos=rotary_cos, rotary_sin=rotary_sin,
                rotary_interleaved=rotary_interleaved, alibi_slopes=alibi_slopes, sinks=sinks,
                softmax_scale=softmax_scale, causal=causal, window_left=left, window_right=right, softcap=softcap,
                num_splits=num_splits, return_lse=return_lse, num_threads=num_threads)
        return o, (l if return_lse else None)
    if out is None:
        out = A.empty_like(q, lib)
    if return_lse and lse is None:
        lse = A.empty_f32(q, A.lse_shape(q, varlen), lib)
    if not return_lse:
        lse = None
    s = A.current_stream(q, lib, stream)
    d = A.dlpack
    report = _C.forward_kvcache(d(q, s), d(k_cache, s), d(v_cache, s), d(out, s), d(lse, s), d(cache_seqlens, s),
                                d(block_table, s), d(cache_batch_idx, s), d(cache_leftpad, s), d(k, s), d(v, s),
                                d(rotary_cos, s), d(rotary_sin, s), bool(rotary_interleaved), d(alibi_slopes, s),
                                d(sinks, s), None if softmax_scale is None else float(softmax_scale), bool(causal),
                                int(left), int(right), float(softcap), int(num_splits), int(num_threads), s,
                                d(cu_seqlens_q, s), int(max_seqlen_q))
    return (out, lse, report) if return_report else (out, lse)


def _compiling():
    import sys

    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.compiler.is_compiling())


@drop_in
def _with_kvcache(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, cache_seqlens, cache_batch_idx, cache_leftpad,
                  block_table, softmax_scale, causal, window_size, softcap, rotary_interleaved, alibi_slopes,
                  num_splits, return_softmax_lse):
    if (k is None) != (v is None):
        raise error("v" if k is not None else "k", "None", "k and v come together", "pass both new k and v, or neither")
    import sys

    torch = sys.modules.get("torch")
    left, right = _window(window_size, causal)
    if torch is not None and isinstance(q, torch.Tensor):  # straight to the op: traceable by torch.compile
        from . import torch_ops

        def c(t):  # FlashAttention makes a non-contiguous last dim contiguous (not the caches: they are written)
            return t if t is None or t.stride(-1) == 1 else t.contiguous()

        out, lse = torch_ops.attention_kvcache(
            c(q), k_cache, v_cache, _seqlens(cache_seqlens, q, k_cache, block_table, "torch"),
            block_table=block_table, cache_batch_idx=cache_batch_idx, cache_leftpad=cache_leftpad, k=c(k), v=c(v),
            rotary_cos=c(rotary_cos), rotary_sin=c(rotary_sin), rotary_interleaved=rotary_interleaved,
            alibi_slopes=alibi_slopes, softmax_scale=softmax_scale, causal=causal, window_left=left,
            window_right=right, softcap=softcap, num_splits=num_splits, return_lse=return_softmax_lse)
        return (out, lse) if return_softmax_lse else out

    out, lse = forward_kvcache(q, k_cache, v_cache, cache_seqlens, k=k, v=v, rotary_cos=rotary_cos,
                               rotary_sin=rotary_sin, rotary_interleaved=rotary_interleaved,
                               cache_batch_idx=cache_batch_idx, cache_leftpad=cache_leftpad, block_table=block_table,
                               softmax_scale=softmax_scale, causal=causal, window=(left, right), softcap=softcap,
                               alibi_slopes=alibi_slopes, num_splits=num_splits, return_lse=return_softmax_lse)
    return (out, lse) if return_softmax_lse else out


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None, cache_seqlens=None,
                            cache_batch_idx=None, cache_leftpad=None, block_table=None, softmax_scale=None,
                            causal=False, window_size=(-1, -1), softcap=0.0, rotary_interleaved=True,
                            alibi_slopes=None, num_splits=0, return_softmax_lse=False):
    """FlashAttention-2's ``flash_attn_with_kvcache``: attention of q (B, Sq, H, D) against a paged or contiguous
    KV cache after appending k, v (optionally rotated) in place. See the module docstring for shapes, semantics
    and errors. Returns out (B, Sq, H, D), or (out, softmax_lse (B, H, Sq) float32) with return_softmax_lse."""
    if _compiling():
        return _with_kvcache.__wrapped__(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, cache_seqlens,
                                         cache_batch_idx, cache_leftpad, block_table, softmax_scale, causal,
                                         window_size, softcap, rotary_interleaved, alibi_slopes, num_splits,
                                         return_softmax_lse)
    return _with_kvcache(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, cache_seqlens, cache_batch_idx,
                         cache_leftpad, block_table, softmax_scale, causal, window_size, softcap, rotary_interleaved,
                         alibi_slopes, num_splits, return_softmax_lse)
