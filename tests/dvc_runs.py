"""Running real DVC in a temporary repo, for the tests of how the pipeline's stages rerun (tests/test_dvc_*.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dvc_executable() -> str:
    """DVC beside this Python (the project's venv) or on PATH; skips the test when neither has it."""
    beside = Path(sys.executable).with_name("dvc")
    found = str(beside) if beside.exists() else shutil.which("dvc")
    if found is None:
        pytest.skip("dvc is not installed")
    return found


def run_dvc(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``dvc ARGS`` in ``repo`` with this checkout's clips4 importable (stages may run ``clips4`` code)."""
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [dvc_executable(), *args],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": python_path, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def logged_runs(repo: Path) -> list[str]:
    """The lines the test's stages appended to ``repo/log.txt`` since the last call (the file is emptied)."""
    log = repo / "log.txt"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines
