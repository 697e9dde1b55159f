"""Hugging Face transformers integration: ``attn_implementation="flatattn"``.

    import flatattn.transformers
    flatattn.transformers.register()
    model = AutoModel.from_pretrained(path, attn_implementation="flatattn")

Works for the model families that dispatch attention through ``AttentionInterface`` (BERT, GPT-2, Llama,
Mistral, Qwen2, ... in transformers >= 4.53). Padding masks are not materialized: like FlashAttention's
integration, the mask function hands the attention the 2-D key-padding mask, and the padded batch runs as a
varlen problem (keys unpadded; causal models also unpad queries, and padded query rows output 0; bidirectional
models keep every query row, so their outputs match SDPA everywhere). Causal masks are aligned bottom-right,
which is what KV-cache decoding needs. ``sliding_window``, ``softcap`` and attention sinks (``s_aux``, gpt-oss:
one logit per head in every row's denominator, learnable: its gradient flows) are forwarded to the kernels.
Training with attention dropout > 0 runs fused (flatattn's Philox stream, ``(seed, offset)`` drawn from torch's
generator of the device per call, as ``flash_attn_func`` does), sinks included.
A 4-D mask a model builds itself (a float mask or relative position bias, T5/Swin-style, or a boolean mask;
(B or 1, H or 1, Nq, Nk)) is passed to the kernels as flatattn's additive bias (a boolean one as 0 / -inf), as
SDPA adds it, without causal (the mask carries it, as in transformers' SDPA path); a float bias that requires
grad gets its gradient.
ALiBi models (BLOOM, MPT) build their bias outside AttentionInterface and do not reach this function:
``patch_bloom_alibi(model)`` swaps BLOOM's attention core for flatattn with ``alibi_slopes`` (no N x N bias).
"""

from __future__ import annotations

import torch

from ._errors import error
from .torch_ops import as_bias, attention, attention_bias, attention_ext

NAME = "flatattn"


def register(name: str = NAME) -> None:
    """Registers flatattn with transformers' AttentionInterface and AttentionMaskInterface under `name`."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError as e:  # pragma: no cover - depends on the installed transformers
        raise ImportError(
            "flatattn.transformers.register() needs transformers >= 4.53 (AttentionInterface and "
            f"AttentionMaskInterface): {e}"
        ) from e
    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, padding_mask)


def padding_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None,
                 attention_mask=None, **kwargs):
    """Mask function: the boolean (B, kv_length) key-padding mask, or None when nothing is padded."""
    if attention_mask is None:
        return None
    attention_mask = attention_mask[:, -kv_length:].bool()
    if attention_mask.shape[1] == kv_length and bool(attention_mask.all()):
        return None
    return attention_mask


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      sliding_window=None, softcap=None, s_aux=None, **kwargs):
    """AttentionInterface function: query (B, Hq, Nq, D), key/value (B, Hkv, Nk, D) -> ((B, Nq, Hq, D), None)."""
    dropout = float(dropout or 0.0)
    if not 0.0 <= dropout < 1.0:  # also NaN
        raise error("dropout", repr(dropout), "must be in [0, 1) (0 disables dropout)",
                    "set the model's attention dropout to a probability such as 0.1")
    if attention_mask is not None and attention_mask.dim() == 4:
        return _biased(module, query, key, value, attention_mask, dropout, scaling, sliding_window, softcap, s_aux), None
    if attention_mask is not None and attention_mask.dim() != 2:
        raise error("attention_mask", f"{attention_mask.dim()}-D tensor {tuple(attention_mask.shape)}",
                    "must be a 2-D padding mask or a 4-D (B, H, Nq, Nk) mask/bias",
                    "pass a 2-D padding mask, or use attn_implementation='sdpa'", unsupported=True)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal) and query.shape[2] > 1  # one query row: it sees the whole cache either way
    # HF's sliding window of size w keeps the last w tokens, the query's included.
    window_left = sliding_window - 1 if sliding_window is not None and key.shape[2] > sliding_window else -1
    window_right = window_left if not causal else -1
    opts = dict(softmax_scale=scaling, causal=causal, window_left=window_left, window_right=window_right,
                softcap=float(softcap or 0.0))
    run = attention
    if s_aux is not None:  # attention sinks (Hq): the ext op, which also returns their gradient
        run, opts["sinks"] = attention_ext, s_aux
    _add_dropout(opts, dropout, query.device)

    q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)  # (B, N, H, D) views
    if attention_mask is None:
        packed = _packed_cu_seqlens(kwargs.get("position_ids"), q, k)
        if packed is None:
            out, _ = run(_c(q), _c(k), _c(v), **opts)
            return out, None
        cu, max_len = packed
        out, _ = run(_c(q[0]), _c(k[0]), _c(v[0]), cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=max_len,
                           max_seqlen_k=max_len, **opts)
        return out.unsqueeze(0), None
    return _padded(q, k, v, attention_mask, causal, opts, run), None


def _c(t):
    return t if t.stride(-1) == 1 else t.contiguous()


def _add_dropout(opts, p, device):
    """Fused dropout p (0: off) into the ops' options: (seed, offset) drawn from torch's generator of the device,
    as flash_attn_func does."""
    if p:
        from .flash_attn_interface import draw_rng_state

        seed, offset = draw_rng_state(device)
        opts.update(dropout_p=p, dropout_seed=seed, dropout_offset=offset)


def _biased(module, query, key, value, mask, dropout, scaling, sliding_window, softcap, s_aux):  # noqa: ARG001
    """A model's own 4-D mask or relative bias (B or 1, H or 1, Nq, >= Nk) as flatattn's additive bias, not causal
    (the mask carries causality, as in transformers' SDPA path). -> (B, Nq, Hq, D)."""
    if dropout:
        raise error("attention_mask", f"4-D tensor {tuple(mask.shape)} with dropout {dropout}",
                    "a 4-D mask or bias with attention dropout is not supported yet (no kernel for the combination)",
                    "evaluate without dropout, or use attn_implementation='sdpa'", unsupported=True)
    nk = key.shape[2]
    mask = mask[:, :, :, :nk]  # a static cache's mask may be longer than the keys (transformers' SDPA slices too)
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=query.dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
    bias = as_bias(mask, q.shape[0], q.shape[2], q.shape[1], nk)
    # No window either: the mask carries the sliding window too (transformers' SDPA path passes none).
    out, _ = attention_bias(_c(q), _c(k), _c(v), bias, sinks=s_aux, softmax_scale=scaling, causal=False,
                            softcap=float(softcap or 0.0))
    return out


def _cu(lengths):
    return torch.nn.functional.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))


def _padded(q, k, v, mask, causal, opts, run=attention):
    """A key-padded batch as a varlen problem. q (B, Nq, H, D), k/v (B, Nk, Hkv, D), mask (B, L) bool."""
    B, Nq, H, D = q.shape
    L = mask.shape[1]
    if k.shape[1] > L:  # a static cache longer than what was seen: the tail is not part of the sequence
        k, v = k[:, :L], v[:, :L]
    Nk = k.shape[1]
    lens_k = mask.sum(1, dtype=torch.int32)
    rows_k = mask.reshape(-1).nonzero().squeeze(1)
    k_un = _c(k).reshape(B * Nk, *k.shape[2:]).index_select(0, rows_k)
    v_un = _c(v).reshape(B * Nk, *v.shape[2:]).index_select(0, rows_k)
    cu_k, max_k = _cu(lens_k), int(lens_k.max())
    if not causal:
        # Every query row stays (as SDPA computes them); only the keys are unpadded.
        q_flat = _c(q).reshape(B * Nq, H, D)
        cu_q = torch.arange(0, (B + 1) * Nq, Nq, dtype=torch.int32, device=q.device)
        out, _ = run(q_flat, k_un, v_un, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=Nq,
                           max_seqlen_k=max_k, **opts)
        return out.reshape(B, Nq, H, D)
    qmask = mask[:, -Nq:] if Nq <= L else torch.ones(B, Nq, dtype=torch.bool, device=q.device)
    lens_q = qmask.sum(1, dtype=torch.int32)
    rows_q = qmask.reshape(-1).nonzero().squeeze(1)
    q_un = _c(q).reshape(B * Nq, H, D).index_select(0, rows_q)
    out_un, _ = run(q_un, k_un, v_un, cu_seqlens_q=_cu(lens_q), cu_seqlens_k=cu_k,
                          max_seqlen_q=int(lens_q.max()), max_seqlen_k=max_k, **opts)
    out = out_un.new_zeros(B * Nq, H, D).index_copy(0, rows_q, out_un)
    return out.reshape(B, Nq, H, D)


def _packed_cu_seqlens(position_ids, q, k):
    """Several sequences packed in one row (batch 1, positions restarting): their cu_seqlens, else None.
    Not looked for under torch.compile (data-dependent), as transformers' own mask code does."""
    if position_ids is None or torch.compiler.is_compiling() or q.shape[0] != 1 or q.shape[1] <= 1 or q.shape[1] != k.shape[1]:
        return None
    pos = position_ids.reshape(-1)
    if pos.numel() != q.shape[1]:
        return None
    restarts = (pos[1:] <= pos[:-1]).nonzero().squeeze(1) + 1
    if restarts.numel() == 0:
        return None
    n = torch.tensor([q.shape[1]], device=pos.device)
    bounds = torch.cat([torch.zeros(1, dtype=restarts.dtype, device=pos.device), restarts, n]).to(torch.int32)
    return bounds.to(q.device), int(bounds.diff().max())


def patch_bloom_alibi(model) -> int:
    """Routes every ``BloomAttention`` of a Hugging Face BLOOM model through flatattn with ALiBi applied inside the
    kernel (``alibi_slopes``, FlashAttention-2's formula; ALiBi: Press et al. 2022, Sec. 3) instead of BLOOM's
    materialized (B*H, Nq, Nk) bias. BLOOM adds ``slope * key_position`` (positions counted over the unpadded keys),
    which differs from the kernel's ``-slope * |i + Nk - Nq - j|`` by a constant per query row, so the softmax is
    the same. Left or right padding runs as varlen (padded query rows output 0), a KV cache as bottom-right causal.
    Patches the modules in place (the instance's ``forward``); returns how many were patched.
    Errors: ``output_attentions=True`` (the probabilities are never formed) is refused."""
    import types

    count = 0
    for mod in model.modules():
        if type(mod).__name__ == "BloomAttention":
            mod.forward = types.MethodType(_bloom_forward, mod)
            count += 1
    if count == 0:
        raise error("model", type(model).__name__, "has no BloomAttention module",
                    "pass a BLOOM model (BloomModel, BloomForCausalLM, ...)")
    return count


def _bloom_slopes(num_heads, device):
    """BLOOM's ALiBi slopes (Press et al. 2022, Sec. 3: the geometric sequence 2^(-8/n), and for head counts that
    are not a power of 2 the odd powers of the next sequence); fp32 (Hq)."""
    import math

    p2 = 2 ** math.floor(math.log2(num_heads))
    slopes = [2.0 ** (-8.0 * (i + 1) / p2) for i in range(p2)]
    slopes += [2.0 ** (-4.0 * (2 * i + 1) / p2) for i in range(min(p2, num_heads - p2))]
    return torch.tensor(slopes, dtype=torch.float32, device=device)


def _bloom_forward(self, hidden_states, residual, alibi, attention_mask, layer_past=None, use_cache=False,  # noqa: ARG001
                   output_attentions=False, **kwargs):
    """BloomAttention.forward with flatattn's fused ALiBi: -> (output, None)."""
    if output_attentions:
        raise error("output_attentions", "True", "flatattn never forms the attention probabilities",
                    "call the model with output_attentions=False, or undo patch_bloom_alibi", unsupported=True)
    B, Nq, _ = hidden_states.shape
    q, k, v = self._reshape(self.query_key_value(hidden_states))  # (B, H, N, D) views
    if layer_past is not None:
        k, v = layer_past.update(k, v, self.layer_idx)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, N, H, D)
    causal = Nq > 1
    opts = dict(softmax_scale=self.inv_norm_factor, causal=causal,
                alibi_slopes=_bloom_slopes(self.num_heads, q.device))
    _add_dropout(opts, float(self.attention_dropout.p) if self.training else 0.0, q.device)
    keep = None
    if attention_mask is not None:  # BLOOM's 4-D mask: the keys the last query row sees are the unpadded ones
        m = attention_mask[:, 0, -1, : k.shape[1]]
        keep = m if m.dtype == torch.bool else m == 0
        if bool(keep.all()):
            keep = None
    if keep is None:
        ctx, _ = attention_ext(_c(q), _c(k), _c(v), **opts)
    else:
        ctx = _padded(q, k, v, keep, causal, opts, attention_ext)
    out = self.dense(ctx.reshape(B, Nq, self.num_heads * self.head_dim))
    out = torch.nn.functional.dropout(out, p=self.hidden_dropout, training=self.training) + residual
    return out, None
