"""flatattn.FlatattnError: every failure the library reports."""


class FlatattnError(ValueError):
    """An error from flatattn, raised before any output is written.

    ``str(e)`` is one line; the parts are attributes, as in the C++ ``flatattn::Error``:

    - ``argument``: the argument at fault (``"q"``, ``"cu_seqlens_k"``, ``"window.right"``, ``"dropout_p"`` ...)
    - ``value``: the value it had (``"dtype f64"``, ``"shape (2, 7, 3)"`` ...)
    - ``limit``: the rule it broke
    - ``fix``: how to fix it
    - ``kind``: ``"invalid_argument"``, ``"unsupported"`` or ``"runtime"``

    It is a ``ValueError``, so ``except ValueError`` catches it.
    """

    def __init__(self, message, argument="", value="", limit="", fix="", kind="invalid_argument"):
        super().__init__(message)
        self.argument = argument
        self.value = value
        self.limit = limit
        self.fix = fix
        self.kind = kind


class FlatattnUnsupportedError(FlatattnError, NotImplementedError):
    """A feature flatattn does not support (yet): dropout, ALiBi, attn_mask, a missing CUDA backend ...

    Both a :class:`FlatattnError` (``ValueError``) and a ``NotImplementedError``.
    """

    def __init__(self, message, argument="", value="", limit="", fix="", kind="unsupported"):
        super().__init__(message, argument, value, limit, fix, kind)


def error(argument, value, limit, fix, unsupported=False):
    """Builds the exception the C++ library would raise, with the same one-line message."""
    msg = f"flatattn: {argument}"
    if value:
        msg += f" = {value}"
    if limit:
        msg += f": {limit}"
    if fix:
        msg += f"; fix: {fix}"
    cls = FlatattnUnsupportedError if unsupported else FlatattnError
    return cls(msg, argument, value, limit, fix)


class FlatattnRuntimeError(FlatattnError, RuntimeError):
    """A failure while running (a CUDA launch or runtime error). Both a FlatattnError and a RuntimeError."""

    def __init__(self, message, argument="", value="", limit="", fix="", kind="runtime"):
        super().__init__(message, argument, value, limit, fix, kind)


class FlatattnDropInError(FlatattnError, RuntimeError):
    """A :class:`FlatattnError` raised by a FlashAttention-2 or SDPA drop-in function
    (``flatattn.flash_attn_func`` ..., ``flatattn.scaled_dot_product_attention``): also a ``RuntimeError``, the
    type FlashAttention-2 raises for a refused call, so code written for it catches ours."""


def as_drop_in_error(e):
    """``e`` as the drop-ins raise it: unchanged when it is already a ``RuntimeError``
    (:class:`FlatattnRuntimeError`, :class:`FlatattnUnsupportedError` through ``NotImplementedError``), else a
    :class:`FlatattnDropInError` with the same message and parts."""
    if isinstance(e, RuntimeError):
        return e
    return FlatattnDropInError(str(e), e.argument, e.value, e.limit, e.fix, e.kind)


def drop_in(fn, compiling=lambda: False):
    """Decorates a drop-in function: a :class:`FlatattnError` it raises leaves it as :func:`as_drop_in_error` says
    (catchable as ``RuntimeError`` as in FlashAttention-2, and still as the class it was), traceback kept.

    ``compiling``: returns True while torch.compile traces (``torch.compiler.is_compiling``); the call then goes
    straight to ``fn``, so the traced graph holds no try block (``fullgraph=True`` stays break-free) and an error
    raised while tracing keeps its own class."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if compiling():
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except FlatattnError as e:
            t = as_drop_in_error(e)
            if t is e:
                raise
            raise t.with_traceback(e.__traceback__) from None

    return wrapper
