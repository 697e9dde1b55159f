"""flatattn: exact, IO-aware fused attention (Flash and FLAT dataflows) on CPUs and NVIDIA GPUs.

APIs (all zero-copy over DLPack; CUDA work is queued on the caller's current stream):

- native, mirroring the C++ API: :func:`forward` and :func:`backward` return ``(out, lse)`` and
  ``(dq, dk, dv)`` for numpy, torch or CuPy arrays;
- FlashAttention-2 compatible (torch): ``flash_attn_func``, ``flash_attn_qkvpacked_func``,
  ``flash_attn_kvpacked_func``, ``flash_attn_varlen_func``, ``flash_attn_varlen_qkvpacked_func``,
  ``flash_attn_varlen_kvpacked_func`` (also in ``flatattn.flash_attn_interface``);
- inference over a paged or contiguous KV cache: ``flash_attn_with_kvcache`` (FlashAttention-2's signature;
  numpy or torch) and the native :func:`forward_kvcache`;
- PyTorch SDPA compatible: :func:`scaled_dot_product_attention` ((B, H, N, D), top-left causal);
- Hugging Face transformers: ``flatattn.transformers.register()`` enables ``attn_implementation="flatattn"``;
- the fp64 oracle for tests: ``flatattn.reference.forward / backward``.

The torch APIs are custom ops (``torch.ops.flatattn.*``) with autograd and fake kernels; they are loaded on
first use, or at import when torch is already imported.
"""

import sys as _sys

from . import _C
from ._errors import FlatattnDropInError, FlatattnError, FlatattnRuntimeError, FlatattnUnsupportedError
from ._native import backward, dropout_mask, forward
from .kvcache import flash_attn_with_kvcache, forward_kvcache
from .sparse import BlockSparse, block_sparse_from_mask

_C._set_error_classes(FlatattnError, FlatattnUnsupportedError, FlatattnRuntimeError)

__version__ = _C.__version__
Report = _C.Report
forward_flops = _C.forward_flops


def cuda_built() -> bool:
    """True when this build of flatattn has its CUDA backend."""
    return _C.cuda_built()


from . import reference  # noqa: E402

_reference_forward = reference.forward
_reference_backward = reference.backward

_TORCH_NAMES = {
    "flash_attn_func": "flash_attn_interface",
    "flash_attn_qkvpacked_func": "flash_attn_interface",
    "flash_attn_kvpacked_func": "flash_attn_interface",
    "flash_attn_varlen_func": "flash_attn_interface",
    "flash_attn_varlen_qkvpacked_func": "flash_attn_interface",
    "flash_attn_varlen_kvpacked_func": "flash_attn_interface",
    "scaled_dot_product_attention": "sdpa",
    "flex_attention": "flex",
}


def _load_torch_apis():
    import importlib

    g = globals()
    for name, mod in _TORCH_NAMES.items():
        g[name] = getattr(importlib.import_module(f"{__name__}.{mod}"), name)


def __getattr__(name):
    if name in _TORCH_NAMES:
        _load_torch_apis()
        return globals()[name]
    if name in ("torch_ops", "flash_attn_interface", "sdpa", "transformers"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'flatattn' has no attribute '{name}'")


if "torch" in _sys.modules:  # torch users: register the ops now (torch.compile sees plain attributes)
    _load_torch_apis()

__all__ = [
    "forward", "backward", "dropout_mask", "forward_kvcache", "flash_attn_with_kvcache",
    "FlatattnError", "FlatattnUnsupportedError", "FlatattnRuntimeError",
    "FlatattnDropInError", "Report",
    "cuda_built", "forward_flops", "reference", "BlockSparse", "block_sparse_from_mask", *_TORCH_NAMES,
]
