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
