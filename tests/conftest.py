"""Shared test settings and fixtures: tests run on the CPU, with few threads, on tiny inputs.

The fixtures here are the ones several test files need: the params of a module's tiny project (read from inside
it), a params file, a random tiny CLIP checkpoint, and a tree's bytes. The builders behind them, which the
project helpers (tests/train_world.py, tests/segment_world.py) call too, are in tests/fixtures.py.
"""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hermetic import _hermetic  # noqa: F401  (autouse: every test in its own folder, no repo outputs)

os.environ.setdefault("OMP_NUM_THREADS", "2")  # before anything loads numpy or torch (hence the lazy imports below)


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


@pytest.fixture
def params(project: Path, monkeypatch: pytest.MonkeyPatch):
    """The params of the requesting module's ``project`` fixture (a tiny project folder), with the test's
    working directory inside it (the stages read their relative paths from there)."""
    from clips4.params import load_params

    monkeypatch.chdir(project)
    return load_params("params.yaml")


@pytest.fixture(scope="session")
def write_params() -> Callable[..., Path]:
    """``write_params(folder, raw, name="params.yaml") -> path``: a params file from a dict."""
    from tests.fixtures import write_params_file

    return write_params_file


@pytest.fixture(scope="session")
def tiny_clip() -> Callable[..., str]:
    """``tiny_clip(path, model_name="clips4-test-vit", seed=0) -> sha256``: a random tiny CLIP checkpoint."""
    from tests.fixtures import save_tiny_clip

    return save_tiny_clip


@pytest.fixture(scope="session")
def tree_bytes() -> Callable[[Path], dict[str, bytes]]:
    """``tree_bytes(folder) -> {relative path: bytes}``, to compare trees byte for byte."""
    from tests.fixtures import tree_bytes

    return tree_bytes
