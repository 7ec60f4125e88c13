"""The selection split: a world with a `tune` split caches it beside train and val, the train stage scores it
(models/clips4.json's ``score``), and `evaluate` scores it on request without touching reports/ (val's scores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_world import build_train_project, train_project
from typer.testing import CliRunner

from clips4.cache import open as open_store
from clips4.cli import app
from clips4.stages.evaluate import run_evaluate

pytestmark = pytest.mark.slow

TUNE = {"synth": {"tune_images": 4}, "dataset": {"tune_split": "tune"}, "video": {"name": "none"}}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_project(build_train_project(tmp_path_factory.mktemp("tune"), TUNE))


def test_caches_hold_the_tune_split_after_train_and_val(project):
    store = open_store(project / "data" / "cache" / "clip_dense.zarr")
    assert store.splits == {"train": (0, 24), "val": (24, 30), "tune": (30, 34)}


def test_train_scores_the_tune_split(project):
    record = json.loads((project / "models" / "clips4.json").read_text())
    assert record["score"]["split"] == "tune" and record["score"]["images"] == 4
    assert record["miou"] == record["score"]["miou"]


def test_evaluate_scores_any_split_and_reports_keep_val(params, project, tmp_path, monkeypatch):
    on_tune = run_evaluate(params, tmp_path / "tune", split="tune")
    on_val = run_evaluate(params, tmp_path / "val")
    assert on_tune.methods["maskclip"].scores.images == 4 and on_val.methods["maskclip"].scores.images == 6
    record = json.loads((project / "models" / "clips4.json").read_text())
    # the train stage's score and evaluate's, on the same split, by the one scorer
    assert on_tune.methods["clips4"].scores.miou == pytest.approx(record["miou"], abs=0.01)

    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["evaluate", "--split", "tune"])
    assert result.exit_code == 0, result.output
    assert "4 images" in result.output
    assert not (project / "reports" / "metrics.json").exists()  # a split other than val writes nothing by default
    result = CliRunner().invoke(app, ["evaluate", "--split", "tune", "--reports-dir", str(tmp_path / "cli")])
    assert result.exit_code == 0 and (tmp_path / "cli" / "metrics.json").is_file()
