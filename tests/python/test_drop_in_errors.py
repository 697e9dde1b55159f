"""FlashAttention-2's error types in the drop-ins: a refused call to ``flatattn.flash_attn_*`` or
``flatattn.scaled_dot_product_attention`` is catchable as ``RuntimeError`` (what FlashAttention-2 raises) and
still as the FlatattnError class it was, with the same message and parts. The translation (_errors.drop_in) is
tested without torch; the drop-ins themselves when torch is installed."""

import traceback

import pytest

import flatattn
from flatattn import _errors


def _bad_input():
    raise _errors.error("window_size", "'x'", "must be a pair", "pass (left, right)")


def test_drop_in_makes_input_errors_runtime_errors():
    f = _errors.drop_in(_bad_input)
    with pytest.raises(RuntimeError) as e:
        f()
    err = e.value
    assert isinstance(err, flatattn.FlatattnError) and isinstance(err, ValueError)
    assert isinstance(err, flatattn.FlatattnDropInError)
    assert (err.argument, err.value, err.limit, err.fix, err.kind) == (
        "window_size", "'x'", "must be a pair", "pass (left, right)", "invalid_argument")
    assert str(err) == "flatattn: window_size = 'x': must be a pair; fix: pass (left, right)"
    # The traceback still leads to the line that raised.
    assert any(fr.name == "_bad_input" for fr in traceback.extract_tb(err.__traceback__))


@pytest.mark.parametrize("make", [
    lambda: _errors.error("block_table", "tensor (2, 4)", "not supported yet", "pass None", unsupported=True),
    lambda: _errors.FlatattnRuntimeError("flatattn: launch failed", "kernel", "x", "y", "z"),
])
def test_drop_in_keeps_runtime_errors_as_they_are(make):
    original = make()

    def raise_it():
        raise original

    with pytest.raises(RuntimeError) as e:
        _errors.drop_in(raise_it)()
    assert e.value is original


def test_drop_in_leaves_other_exceptions_and_results_alone():
    def type_error():
        raise TypeError("not ours")

    with pytest.raises(TypeError):
        _errors.drop_in(type_error)()
    assert _errors.drop_in(lambda a, b=2: a + b)(1, b=5) == 6
    assert _errors.drop_in(_bad_input).__name__ == "_bad_input"  # functools.wraps


def test_drop_in_while_compiling_calls_straight_through():
    with pytest.raises(flatattn.FlatattnError) as e:
        _errors.drop_in(_bad_input, compiling=lambda: True)()
    assert not isinstance(e.value, RuntimeError)


def test_drop_ins_raise_runtime_errors():
    torch = pytest.importorskip("torch")
    from flatattn import flash_attn_interface as fa

    q = torch.randn(1, 8, 4, 16)
    k3 = torch.randn(1, 8, 3, 16)
    calls = [
        ("window_size", lambda: fa.flash_attn_func(q, q, q, window_size="x")),  # Python-side check
        ("k", lambda: fa.flash_attn_func(q, k3, k3)),  # the C++ library's check, through the op
        ("q", lambda: fa.flash_attn_func(q.double(), q.double(), q.double())),
        ("qkv", lambda: fa.flash_attn_qkvpacked_func(torch.randn(1, 8, 2, 2, 16))),
        ("dropout_p", lambda: fa.flash_attn_func(q, q, q, dropout_p=1.0)),  # dropout works; p = 1 is out of range
        ("alibi_slopes", lambda: fa.flash_attn_func(q, q, q, dropout_p=0.1,  # still unsupported: ALiBi + dropout
                                                    alibi_slopes=torch.ones(4))),
        ("key", lambda: flatattn.scaled_dot_product_attention(torch.randn(1, 4, 8, 16), torch.randn(1, 2, 8, 16),
                                                              torch.randn(1, 2, 8, 16))),
        ("attn_mask", lambda: flatattn.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(4, 4, dtype=bool),
                                                                    dropout_p=0.1)),
    ]
    for argument, call in calls:
        with pytest.raises(RuntimeError) as e:
            call()
        assert isinstance(e.value, flatattn.FlatattnError) and e.value.argument == argument, str(e.value)
