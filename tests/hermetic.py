"""Hermetic tests (a pytest plugin, loaded by tests/conftest.py): no test reads or writes the repository's own
pipeline outputs and params (``models/``, ``reports/``, ``data/``, ``params.yaml``).

- Every test starts in its own empty working folder, so a relative path that a test (or the code under test)
  resolves against the working folder by accident finds nothing of the repository's; a test that needs a project
  builds one under ``tmp_path`` and changes into it.
- An audit hook records every file the test process opens; a test that opens one of the guarded paths fails,
  naming the file. (Files opened by subprocesses are not seen; their working folder is the test's.)

So the suite gives the same result in a clone where ``dvc repro`` has run and in a clean one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUARDED_FOLDERS = tuple(str(REPO / name) + os.sep for name in ("models", "reports", "data"))
GUARDED_FILES = (str(REPO / "params.yaml"),)
#: Tests that read the shipped params.yaml on purpose: it must validate (read only, never written).
READS_SHIPPED_PARAMS = {
    "tests/test_params.py::test_repo_params_file_is_valid",
    "tests/test_presets.py::test_the_command_changes_the_presets_keys_only_and_keeps_the_comments",
    "tests/test_presets.py::test_presets_stack_on_the_shipped_params",
}

_opened: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not args or not isinstance(args[0], str | bytes | os.PathLike):
        return
    try:
        path = os.path.abspath(os.fsdecode(args[0]))
    except (TypeError, ValueError):
        return
    if path.startswith(GUARDED_FOLDERS) or path in GUARDED_FILES:
        _opened.append(path)


sys.addaudithook(_audit)


def guarded_opens() -> list[str]:
    """The guarded files opened since the last call (the list is emptied)."""
    found = sorted(set(_opened))
    _opened.clear()
    return found


@pytest.fixture(autouse=True)
def _hermetic(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    guarded_opens()
    yield
    opened = guarded_opens()
    allowed = set(GUARDED_FILES) if request.node.nodeid.split("[")[0] in READS_SHIPPED_PARAMS else set()
    touched = [path for path in opened if path not in allowed]
    if touched:
        pytest.fail(
            f"{request.node.nodeid} opened the repository's own outputs or params: {', '.join(touched)}; "
            "build the project it needs under tmp_path instead",
            pytrace=False,
        )
