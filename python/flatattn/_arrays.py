"""Array-library plumbing for the native API: which library an array comes from, how to allocate an
output like it, which CUDA stream it is ordered on, and how to hand it to the extension over DLPack."""

from __future__ import annotations

from ._errors import error


def library(x) -> str:
    """'numpy', 'torch', 'cupy' or 'dlpack' (any other object with __dlpack__)."""
    mod = type(x).__module__
    if mod.startswith("numpy"):
        return "numpy"
    if mod.startswith("torch"):
        return "torch"
    if mod.startswith("cupy"):
        return "cupy"
    if hasattr(x, "__dlpack__"):
        return "dlpack"
    raise TypeError(
        f"flatattn: expected a numpy, torch or CuPy array (or any DLPack producer), got {type(x).__name__}"
    )


def empty_like(x, lib: str):
    """An uninitialized array with x's shape, dtype, device and (where dense) stride order."""
    if lib == "numpy":
        import numpy as np

        return np.empty_like(x)
    if lib == "torch":
        import torch

        return torch.empty_like(x)
    if lib == "cupy":
        import cupy

        return cupy.empty_like(x)
    raise _needs_out(lib)


def empty_f32(x, shape, lib: str):
    """An uninitialized float32 array of `shape` on x's device."""
    if lib == "numpy":
        import numpy as np

        return np.empty(shape, dtype=np.float32)
    if lib == "torch":
        import torch

        return x.new_empty(shape, dtype=torch.float32)
    if lib == "cupy":
        import cupy

        with x.device:
            return cupy.empty(shape, dtype=cupy.float32)
    raise _needs_out(lib)


def empty(x, shape, dtype_name: str, lib: str):
    """An uninitialized array of `shape` and dtype 'float64' / 'float32' / 'same' (x's) on x's device."""
    if dtype_name == "same":
        dtype = x.dtype
    elif lib == "torch":
        import torch

        dtype = getattr(torch, dtype_name)
    else:
        dtype = dtype_name
    if lib == "numpy":
        import numpy as np

        return np.empty(shape, dtype=dtype)
    if lib == "torch":
        return x.new_empty(shape, dtype=dtype)
    if lib == "cupy":
        import cupy

        with x.device:
            return cupy.empty(shape, dtype=dtype)
    raise _needs_out(lib)


def _needs_out(lib):
    return TypeError(f"flatattn: cannot allocate outputs for a '{lib}' array; pass numpy, torch or CuPy arrays")


def is_cuda(x, lib: str) -> bool:
    if lib == "numpy":
        return False
    if lib == "torch":
        return x.is_cuda
    if lib == "cupy":
        return True
    dev_type, _ = x.__dlpack_device__()
    return dev_type in (2, 13)  # kDLCUDA, kDLCUDAManaged


def current_stream(x, lib: str, stream) -> int:
    """The CUDA stream (as an int handle) the call is ordered on: the caller's `stream` when given, else the
    library's current stream (torch, CuPy), else the legacy default stream. 0 for CPU arrays."""
    if not is_cuda(x, lib):
        return 0
    if stream is not None:
        return int(getattr(stream, "cuda_stream", getattr(stream, "ptr", stream)))
    if lib == "torch":
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream
    if lib == "cupy":
        import cupy

        return cupy.cuda.get_current_stream().ptr
    return 0


def dlpack(x, stream: int):
    """What the extension receives: torch tensors as a DLPack capsule made in C (10x cheaper than
    Tensor.__dlpack__), CUDA arrays of other libraries through the consumer-stream protocol (the producer
    orders its pending work before `stream`), CPU arrays as they are."""
    if x is None:
        return None
    lib = library(x)
    if lib == "torch":
        return _torch_capsule(x)
    if lib == "numpy":
        return x
    if is_cuda(x, lib):
        return x.__dlpack__(stream=stream if stream not in (0, None) else 1)
    return x


def _torch_capsule(x):
    global _torch_capsule
    import torch

    fast = getattr(torch._C, "_to_dlpack", None)
    if fast is None:  # pragma: no cover - older torch
        from torch.utils.dlpack import to_dlpack as fast
    _torch_capsule = fast
    return fast(x)


def lse_shape(q, varlen: bool):
    """(B, Hq, Nq) for q (B, Nq, Hq, D); (Hq, total_q) for varlen q (total_q, Hq, D)."""
    want = 3 if varlen else 4
    if len(q.shape) != want:
        layout = "(total_q, Hq, D) with cu_seqlens" if varlen else "(B, Nq, Hq, D)"
        raise error("q", f"shape {tuple(q.shape)}", f"rank must be {want}: {layout}",
                    "pass q in the FlashAttention layout (a (B, H, N, D) tensor as .transpose(1, 2))")
    if varlen:
        return (q.shape[1], q.shape[0])
    return (q.shape[0], q.shape[2], q.shape[1])
