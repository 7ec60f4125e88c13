"""The CLI's global options: -q hides the library's INFO messages, -v shows DEBUG ones; and `python -m
clips4.cli` knows every command (its entry point runs after the last one is registered)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import clips4.serve.app as serve_app
from clips4.cli import app

REPO = Path(__file__).resolve().parents[1]
URL_LINE = "clips4 serve: open http://127.0.0.1:7860/ (Ctrl-C stops)"


class _FakeSegmenter:
    def describe(self) -> str:
        return "fake student on cpu"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """`clips4 serve` without models or a server: the demo is a stub and uvicorn.run records its arguments."""
    import uvicorn

    runs: list[dict] = []
    monkeypatch.setattr(serve_app, "load_demo", lambda *args: serve_app.Demo({"CLIP-S4": _FakeSegmenter()}))
    monkeypatch.setattr(uvicorn, "run", lambda application, **kwargs: runs.append(kwargs))
    yield runs
    logging.getLogger("clips4").setLevel(logging.NOTSET)  # leave the hierarchy as other tests expect it


def test_quiet_hides_the_info_messages_that_show_by_default(served):
    shown = CliRunner().invoke(app, ["serve"])
    assert shown.exit_code == 0, shown.output
    assert URL_LINE in shown.stderr and "fake student on cpu" in shown.stderr
    assert shown.stdout == ""  # messages go to stderr, plainly (no level or logger name)
    assert "INFO" not in shown.stderr

    quiet = CliRunner().invoke(app, ["-q", "serve"])
    assert quiet.exit_code == 0, quiet.output
    assert URL_LINE not in quiet.output and "fake student" not in quiet.output
    assert len(served) == 2  # the server ran both times


def test_verbose_shows_debug_and_both_flags_are_refused(served):
    verbose = CliRunner().invoke(app, ["--verbose", "serve"])
    assert verbose.exit_code == 0 and URL_LINE in verbose.stderr
    assert logging.getLogger("clips4.serve.app").isEnabledFor(logging.DEBUG)
    both = CliRunner().invoke(app, ["-v", "-q", "serve"])
    assert both.exit_code == 2 and "at most one of -v/--verbose and -q/--quiet" in both.output
    assert len(served) == 1


def test_python_m_clips4_cli_knows_the_experiments_commands(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "clips4.cli", "experiments", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"},
    )
    assert run.returncode == 0, run.stderr
    assert "queue" in run.stdout and "collect" in run.stdout
