"""pytest set-up for the flatattn Python tests: a fresh seed per run (printed; replay with FLATATTN_SEED=...),
one numpy Generator per test derived from it, and the skip markers."""

import os
import random
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # rule.py, cases.py, torch_ref.py

_SEED = int(os.environ.get("FLATATTN_SEED", random.SystemRandom().randrange(1, 2**31)))


def pytest_report_header(config):
    return f"flatattn seed: {_SEED} (replay with FLATATTN_SEED={_SEED})"


@pytest.fixture
def seed(request):
    """This test's seed: the run's seed mixed with the test id (stable across runs with FLATATTN_SEED)."""
    return (_SEED ^ zlib.crc32(request.node.nodeid.encode())) & 0x7FFFFFFF


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU and a CUDA build of flatattn")
    config.addinivalue_line("markers", "slow: takes a minute on a small CPU; runs with FLATATTN_TEST_SLOW=1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FLATATTN_TEST_SLOW") != "1":
        skip_slow = pytest.mark.skip(reason="slow: set FLATATTN_TEST_SLOW=1")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip_slow)
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    import flatattn

    if has_cuda and flatattn.cuda_built():
        return
    why = "no CUDA GPU" if not has_cuda else "flatattn was built without CUDA"
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
