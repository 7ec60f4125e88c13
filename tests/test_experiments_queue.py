"""A table through a real `dvc queue start` (issue 21): `clips4 experiments queue`, DVC's queue workers, then
`clips4 experiments collect`, on a tiny git + DVC project whose stages stand in for the pipeline's: an uncached
"cache" stage (as the Zarr stores are, `cache: false`) and a scoring stage that writes the two metrics files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.dvc_runs import REPO, run_dvc

BUILD_CACHE = textwrap.dedent(
    """
    import os, pathlib
    with open(os.environ["CACHE_LOG"], "a") as log:  # outside the repository: seen from the queue's copies too
        log.write("cache built\\n")
    pathlib.Path("data/cache").mkdir(parents=True, exist_ok=True)
    pathlib.Path("data/cache/base.txt").write_text("10\\n")
    """
)
SCORE = textwrap.dedent(
    """
    import json, pathlib, sys, yaml
    params = yaml.safe_load(open("params.yaml"))
    if params["x"] < 0:
        sys.exit("x must be positive")
    base = int(pathlib.Path("data/cache/base.txt").read_text())
    pathlib.Path("reports").mkdir(exist_ok=True)
    metrics = {"clips4": {"miou": base * params["x"] + params["seed"]}}
    pathlib.Path("reports/metrics.json").write_text(json.dumps(metrics))
    pathlib.Path("reports/prototypes.json").write_text(json.dumps({"cosine_to_m32": 0.25 * params["x"]}))
    """
)
DVC_YAML = textwrap.dedent(
    """
    stages:
      cache:
        cmd: {python} build_cache.py
        deps: [build_cache.py]
        outs:
          - data/cache/base.txt:
              cache: false
      score:
        cmd: {python} score.py
        deps: [score.py, data/cache/base.txt]
        params: [x, seed]
        metrics:
          - reports/metrics.json:
              cache: false
          - reports/prototypes.json:
              cache: false
    """
)
EXPERIMENTS = textwrap.dedent(
    """
    copy_paths: [data/cache]
    tables:
      two:
        title: "Two seeds"
        set: {x: 2}
        grid: {seed: [0, 1]}
        metrics: [clips4.miou, "reports/prototypes.json:cosine_to_m32"]
      broken:
        rows: [{x: -1}]
        metrics: [clips4.miou]
    """
)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _clips4(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clips4.cli", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )


def _wait_for_the_queue(repo: Path, env: dict[str, str], timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run_dvc(repo, "queue", "status", env=env).stdout
        if not any(state in status for state in ("Queued", "Running")):
            return status
        time.sleep(2)
    pytest.fail(f"the queue did not finish in {timeout_s} s:\n{status}")


@pytest.mark.slow
def test_a_table_runs_through_dvc_queue_start_and_is_collected(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "build_cache.py").write_text(BUILD_CACHE)
    (repo / "score.py").write_text(SCORE)
    (repo / "dvc.yaml").write_text(DVC_YAML.format(python=sys.executable))
    (repo / "params.yaml").write_text("x: 1\nseed: 0\n")
    (repo / "pipeline").mkdir()
    (repo / "pipeline" / "experiments.yaml").write_text(EXPERIMENTS)
    (repo / ".gitignore").write_text("/data/cache\n")
    log = tmp_path / "cache_log.txt"
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "CACHE_LOG": str(log), "PYTHONPATH": python_path}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # dvc beside python
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "test@example.com")
    _git(repo, "config", "user.name", "test")
    assert run_dvc(repo, "init", "-q", env=env).returncode == 0
    repro = run_dvc(repo, "repro", env=env)
    assert repro.returncode == 0, repro.stderr
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "baseline")  # queue from a clean workspace: each run is HEAD + its -S values
    assert log.read_text() == "cache built\n"

    for table in ("two", "broken"):
        queued = _clips4(repo, "experiments", "queue", table, env=env)
        assert queued.returncode == 0, queued.stderr
        assert "-C data/cache" in queued.stdout
    started = run_dvc(repo, "queue", "start", "-j", "1", env=env)
    assert started.returncode == 0, started.stderr
    status = _wait_for_the_queue(repo, env)
    assert status.count("Success") == 2 and status.count("Failed") == 1, status
    assert log.read_text() == "cache built\n"  # copied into each run's workspace, not rebuilt there

    again = _clips4(repo, "experiments", "queue", "two", env=env)  # nothing missing: nothing queued twice
    assert again.returncode == 0 and "queued 0 runs of two, 2 already in `dvc exp show`" in again.stdout

    baseline = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "NOTES.md").write_text("a commit after the runs: HEAD is no longer their baseline\n")
    _git(repo, "add", "NOTES.md")
    _git(repo, "commit", "-q", "-m", "notes")
    out = repo / "docs" / "tables.md"
    ledger = "docs/runs.json"
    collected = _clips4(
        repo, "experiments", "collect", "--rev", baseline, "--ledger", ledger, "--out", str(out), env=env
    )
    assert collected.returncode == 0, collected.stderr
    text = out.read_text()
    assert f"Baseline commits: `{baseline[:12]}` (2 runs)" in text and "Every run sets `x=2`." in text
    assert "| 20.50 ± 0.71 | 0.5000 ± 0.0000 | 2/2 |" in text  # miou 20 and 21 over seeds 0 and 1; x = 2
    assert "| -1 | - | 0/1 |" in text and "- `broken-x-1`: " in text  # the failure is named, the others kept
    at_head = _clips4(repo, "experiments", "collect", "two", env=env)
    assert at_head.returncode == 0 and "| - | - | 0/2 |" in at_head.stdout  # HEAD's own experiments: none

    # a fresh clone (another machine) has no refs/exps: the committed ledger still holds the two runs
    _git(repo, "add", ledger)
    _git(repo, "commit", "-q", "-m", "runs ledger")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, capture_output=True)
    from_clone = _clips4(clone, "experiments", "collect", "two", "--ledger", ledger, env=env)
    assert from_clone.returncode == 0, from_clone.stderr
    assert "| 20.50 ± 0.71 | 0.5000 ± 0.0000 | 2/2 |" in from_clone.stdout and "0 new runs, 2 kept" in from_clone.stderr
