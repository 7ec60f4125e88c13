"""The advice for a truncated student checkpoint works (issue 22, finding 10): `dvc checkout models/clips4.pt`
refused to replace the modified file without `--force`, and the failed `dvc repro` had already deleted
models/clips4.json and reports/train/metrics.json (`cache: false`: DVC cannot restore them, git can).

A real DVC + git repo whose `train` stage declares the outputs of dvc.yaml's own train stage; its command reads the
checkpoint with clips4's reader, so the error message, and the command in it, are the real ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.dvc_runs import run_dvc

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("models/clips4.json", "reports/train/metrics.json")

TRAIN = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from clips4.model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
    checkpoint = Path("models/clips4.pt")
    if checkpoint.exists():  # resume, as `clips4 train` does: a corrupt file is an error, never thrown away
        try:
            read_checkpoint(checkpoint)
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
    else:
        save_checkpoint(checkpoint, {"iteration": 2})
    Path("models/clips4.json").write_text(json.dumps({"miou": 12.5}))
    os.makedirs("reports/train/plots/metrics", exist_ok=True)
    Path("reports/train/metrics.json").write_text(json.dumps({"step": 2, "train": {"loss": 0.5}}))
    """
)


def _train_stage() -> dict:
    """dvc.yaml's train stage with its outputs as declared there, and the stand-in command."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    return {"cmd": "python train.py", "deps": ["train.py"], **{k: stage[k] for k in ("outs", "metrics", "plots")}}


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    identity = ["-c", "user.name=clips4 tests", "-c", "user.email=tests@clips4.invalid"]
    return subprocess.run(["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True)


def test_the_stage_metrics_are_those_dvc_yaml_declares():
    from clips4.model.checkpoint import STAGE_METRICS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {}
    for stage in stages.values():
        outs = [next(iter(out)) if isinstance(out, dict) else out for out in stage.get("outs", [])]
        metrics = [next(iter(m)) if isinstance(m, dict) else m for m in stage.get("metrics", [])]
        declared |= {out: tuple(metrics) for out in outs if out in STAGE_METRICS}
    assert declared == STAGE_METRICS


@pytest.mark.slow
def test_the_truncated_checkpoint_advice_restores_the_committed_run(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": _train_stage()}}, sort_keys=False))
    _git(repo, "init", "-q")
    assert run_dvc(repo, "init", "-q").returncode == 0
    first = run_dvc(repo, "repro", env=_dvc_env())
    assert first.returncode == 0, first.stderr
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "trained")
    committed = {p: (repo / p).read_bytes() for p in ("models/clips4.pt", *METRICS)}

    checkpoint = repo / "models" / "clips4.pt"
    checkpoint.write_bytes(committed["models/clips4.pt"][:300])  # truncated
    failed = run_dvc(repo, "repro", env=_dvc_env())
    assert failed.returncode != 0 and "not a readable checkpoint" in failed.stderr
    assert not (repo / "models" / "clips4.json").exists()  # what the issue saw: DVC deleted the metrics

    advice = re.search(r"restore the last committed run, from the project root: `([^`]+)`", failed.stderr)
    assert advice, failed.stderr
    done = subprocess.run(
        advice.group(1), shell=True, cwd=repo, capture_output=True, text=True, env=_dvc_env(), check=False
    )
    assert done.returncode == 0, done.stderr
    for path, content in committed.items():
        assert (repo / path).read_bytes() == content, path
    status = run_dvc(repo, "status")
    assert "changed" not in status.stdout and "modified" not in status.stdout, status.stdout


def _dvc_env() -> dict[str, str]:
    """PATH with this interpreter's folder first: the stage's `python` and the advice's `dvc` are the project's."""
    return {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
