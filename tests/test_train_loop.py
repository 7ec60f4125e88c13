"""The training loop on a tiny world: bit-exact resume, two DDP ranks under torchrun, the checkpoint's errors,
and the `clips4 train` stage's outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_world import build_train_project
from typer.testing import CliRunner

from clips4.cli import app
from clips4.model.checkpoint import CheckpointError, load_student, read_checkpoint
from clips4.train.loop import TrainInputs, train_student

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_train_project(tmp_path_factory.mktemp("train"))


def _inputs() -> TrainInputs:
    cache = Path("data/cache")
    teacher = {"model_name": "clips4-test-vit", "weights_sha256": "test", "source": "models/clip.pt"}
    return TrainInputs(
        str(cache / "clip_dense.zarr"), str(cache / "superpixels.zarr"), str(cache / "prototypes.zarr"), teacher
    )


def _with(params, **train):
    import dataclasses

    return dataclasses.replace(params, train=dataclasses.replace(params.train, **train))


def _state(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = read_checkpoint(path)
    return checkpoint["state_dict"] | {"unknown": checkpoint["training"]["objective"]["unknown"]}


def test_resumed_run_equals_uninterrupted_bit_for_bit(params, tmp_path):
    whole = train_student(params, inputs=_inputs(), out=tmp_path / "whole.pt", progress=False)
    assert whole.iterations == 6 and not whole.stopped_early

    # Killed after iteration 3: the last checkpoint is iteration 2's; the rerun resumes there, with the data
    # built by a worker process this time (the batches must not depend on who builds them).
    resumed_params = _with(params, workers=1)
    first = train_student(resumed_params, inputs=_inputs(), out=tmp_path / "resumed.pt", stop_after=3, progress=False)
    assert first.stopped_early and read_checkpoint(tmp_path / "resumed.pt")["iteration"] == 2
    second = train_student(resumed_params, inputs=_inputs(), out=tmp_path / "resumed.pt", progress=False)
    assert second.start_iteration == 2 and second.iterations == 6

    expected, actual = _state(tmp_path / "whole.pt"), _state(tmp_path / "resumed.pt")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert second.weights_sha256 == whole.weights_sha256
    # and the run did train: the weights moved from their initial values
    fresh = train_student(params, inputs=_inputs(), out=tmp_path / "short.pt", stop_after=1, progress=False)
    assert fresh.weights_sha256 != whole.weights_sha256


def test_checkpoint_of_another_configuration_is_named_and_replaced(params, tmp_path, caplog):
    out = tmp_path / "model.pt"
    train_student(_with(params, iterations=2), inputs=_inputs(), out=out, progress=False)
    from clips4.model.checkpoint import check_identity

    other = read_checkpoint(out)
    with pytest.raises(
        CheckpointError, match=r"model\.pt: trained with another configuration \(train\.iterations: 2 -> 6"
    ):
        check_identity(other, other["identity"] | {"train.iterations": 6}, out)
    # The train stage does not resume it: a fresh run of the new configuration replaces it.
    result = train_student(params, inputs=_inputs(), out=out, progress=False)
    assert result.start_iteration == 0 and read_checkpoint(out)["iteration"] == 6
    assert "starting afresh" in caplog.text  # a warning of the clips4 loggers (the CLI shows it on stderr)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"])
def test_corrupt_checkpoint_is_a_clear_error(params, tmp_path, content):
    out = tmp_path / "clips4.pt"
    out.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"clips4\.pt: not a readable checkpoint .*corrupt"):
        load_student(out)
    with pytest.raises(CheckpointError, match=r"clips4\.pt: not a readable checkpoint"):
        train_student(params, inputs=_inputs(), out=out, progress=False)


def test_checkpoint_without_the_format_tag_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"weights\.pt: not a clips4 student checkpoint"):
        read_checkpoint(path)


TORCHRUN_SCRIPT = """
import json, os, sys
from pathlib import Path
from clips4.params import load_params
from clips4.train.loop import TrainInputs, train_student
params = load_params("params.yaml")
cache = Path("data/cache")
inputs = TrainInputs(str(cache / "clip_dense.zarr"), str(cache / "superpixels.zarr"), str(cache / "prototypes.zarr"),
                     {"model_name": "clips4-test-vit", "weights_sha256": "test", "source": "models/clip.pt"})
result = train_student(params, inputs=inputs, out=sys.argv[1], progress=False)
Path(sys.argv[2], f"rank{os.environ['RANK']}.json").write_text(json.dumps(
    {"weights": result.weights_sha256, "world": result.world_size, "iterations": result.iterations}))
"""


def test_torchrun_two_ranks_end_with_identical_weights(project, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(script),
        str(tmp_path / "ddp.pt"),
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2 and ranks[0]["iterations"] == 6
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # rank 0 alone wrote the checkpoint, and it holds both ranks' RNG and memory-bank states
    checkpoint = read_checkpoint(tmp_path / "ddp.pt")
    assert len(checkpoint["training"]["ranks"]) == 2 and checkpoint["identity"]["world_size"] == 2
    assert not list(tmp_path.glob(".ddp.pt.tmp*"))


def test_train_command_writes_model_metrics_and_curves(project, monkeypatch):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 0, result.output
    record = json.loads(Path("models/clips4.json").read_text())
    for key in ("final_losses", "wall_seconds", "images_per_second", "avgsim", "miou", "params", "clip"):
        assert key in record, key
    assert -1.0 <= record["avgsim"] <= 1.0 and record["score"]["images"] == 6
    assert set(record["final_losses"]) == {"loss", "contrastive", "embedding", "semantic", "unknown"}
    student, checkpoint = load_student("models/clips4.pt")
    assert checkpoint["clip"]["model_name"] == "clips4-test-vit" and len(checkpoint["clip"]["weights_sha256"]) == 64
    assert checkpoint["embed_dim"] == student.embed_dim == 32 and checkpoint["clips4_version"]
    torch.load("models/clips4.pt", weights_only=True)  # plain tensors and values only
    from clips4.inference import Segmenter  # inference finds the CLIP from the reference the checkpoint records

    assert (
        Segmenter.from_checkpoint("models/clips4.pt", device="cpu").clip.sha256 == checkpoint["clip"]["weights_sha256"]
    )
    curves = Path("reports/train/plots/metrics/train")
    assert (curves / "loss.tsv").is_file() and (curves / "embedding.tsv").is_file()
    # A second run finds the finished checkpoint of the same configuration: nothing to train. DVC deletes the
    # stage's outputs that are not `persist` first; the rerun writes them again with the finished run's record.
    summary = json.loads(Path("reports/train/metrics.json").read_text())
    rows = (curves / "loss.tsv").read_text()
    Path("models/clips4.json").unlink()
    Path("reports/train/metrics.json").unlink()
    again = CliRunner().invoke(app, ["train"])
    assert again.exit_code == 0 and "6 iterations (from 6)" in again.output
    rerun = json.loads(Path("models/clips4.json").read_text())
    assert rerun["resumed_from"] == 6 and rerun["final_losses"] == record["final_losses"]
    for key in ("wall_seconds", "images_per_second", "data_wait_fraction", "miou"):
        assert rerun[key] == record[key], key
    assert json.loads(Path("reports/train/metrics.json").read_text()) == summary and summary["step"] == 6
    assert (curves / "loss.tsv").read_text() == rows  # no step logged twice


def test_train_command_reports_a_corrupt_checkpoint_in_one_line(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(app, ["train", "--out", str(bad), "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 1
    assert "bad.pt: not a readable checkpoint" in result.output and "Traceback" not in result.output


def test_maskclip_plus_baseline_trains_per_pixel_on_the_known_classes_only(project, monkeypatch):
    import yaml

    monkeypatch.chdir(project)
    raw = yaml.safe_load(Path("params.yaml").read_text()) | {"fold": 0}
    Path("params_fold0.yaml").write_text(yaml.safe_dump(raw))
    held_out = json.loads(Path("data/synth/folds.json").read_text())["0"]
    result = CliRunner().invoke(app, ["train", "--params", "params_fold0.yaml", "--baseline", "maskclip-plus"])
    assert result.exit_code == 0, result.output
    record = json.loads(Path("models/maskclip_plus.json").read_text())
    assert record["baseline"] == "maskclip-plus" and set(record["final_losses"]) == {"loss", "pixel_semantic"}
    _, checkpoint = load_student("models/maskclip_plus.pt")
    assert checkpoint["baseline"] == "maskclip-plus"
    classes = checkpoint["identity"]["baseline.classes"]
    assert classes and not set(classes) & set(held_out)  # the fold's classes are never named
    assert not any(key.startswith("losses.") for key in checkpoint["identity"])  # CLIP-S4's losses play no part
    assert Path("reports/train_maskclip_plus/plots/metrics/train/pixel_semantic.tsv").is_file()
    # CLIP-S4's hyper-parameters do not touch the baseline: a changed losses.* finds it finished.
    raw["losses"] = {"contrastive": False}
    Path("params_fold0.yaml").write_text(yaml.safe_dump(raw))
    again = CliRunner().invoke(app, ["train", "--params", "params_fold0.yaml", "--baseline", "maskclip-plus"])
    assert again.exit_code == 0 and "6 iterations (from 6)" in again.output


def test_unknown_baseline_is_a_one_line_usage_error(project, monkeypatch):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["train", "--baseline", "maskclip"])
    assert result.exit_code == 2 and "unknown baseline 'maskclip'" in result.output
