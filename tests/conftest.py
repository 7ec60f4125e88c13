"""Shared test settings: tests run on the CPU, with few threads, on tiny inputs."""

import os

import pytest

from tests.hermetic import _hermetic  # noqa: F401  (autouse: every test in its own folder, no repo outputs)

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _deterministic_torch_threads():
    """Keep torch on at most 2 threads so tests behave the same on the 2-core CI machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
