"""clip_pretrain and evaluate end to end on a tiny world with a tiny CLIP (seconds on a CPU)."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from clips4.cli import app
from clips4.clip import load_clip
from clips4.clip.pretrain import contrastive_loss, dense_presence_loss, train_tiny_clip
from clips4.data.synth import write_world
from clips4.errors import Clips4Error
from clips4.params import load_params
from clips4.stages.clip_pretrain import run_clip_pretrain
from clips4.stages.evaluate import run_evaluate

TINY = {
    "synth": {"image_size": 32, "train_images": 48, "val_images": 8, "tune_images": 0},
    "clip": {
        "model": "clips4-test-vit",
        "pretrained": "synth",
        "window": 32,
        "stride": 16,
        "pretrain": {"epochs": 2, "batch_size": 16, "warmup_steps": 1},
    },
    # Language-driven scores only: this project has no caches (probes) and no videos (tests/test_evaluate_stage.py
    # covers the other metrics).
    "eval": {"knn": {"train_images": 0}, "linear": {"train_images": 0}},
    "video": {"name": "none"},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, write_params):
    root = tmp_path_factory.mktemp("project")
    params = load_params(write_params(root, TINY))
    write_world(params.synth, params.seed, root / "data" / "synth", workers=1)
    return root


def test_contrastive_loss_prefers_matching_pairs():
    features = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(math.log(10.0))
    assert contrastive_loss(features, features, scale) < contrastive_loss(features, features.roll(1, 0), scale)


def test_dense_presence_loss_rewards_a_patch_showing_each_named_concept():
    text = torch.eye(3)  # three concepts
    scale = torch.tensor(math.log(10.0))
    present = torch.tensor([[True, True, False]])
    # Two patches showing concepts 0 and 1, as the caption says; then the same patches showing 0 and the absent 2.
    right = torch.stack([text[0], text[1]]).view(1, 1, 2, 3)
    wrong = torch.stack([text[0], text[2]]).view(1, 1, 2, 3)
    assert dense_presence_loss(right, text, present, scale) < dense_presence_loss(wrong, text, present, scale)
    # The loss reaches the patches: its gradient moves the wrong patch toward the named concept 1.
    patches = wrong.clone().requires_grad_(True)
    dense_presence_loss(patches, text, present, scale).backward()
    assert patches.grad[0, 0, 1, 1] < 0 and patches.grad[0, 0, 1, 2] > 0


def test_dense_weight_changes_what_the_tiny_clip_learns(project, monkeypatch):
    monkeypatch.chdir(project)
    weights = {}
    for dense_weight in (0.0, 1.0):
        params = load_params("params.yaml", {"clip.pretrain.dense_weight": dense_weight, "clip.pretrain.epochs": 1})
        weights[dense_weight] = train_tiny_clip(params, progress=False).model.state_dict()
    projection = "visual.proj"
    assert not torch.allclose(weights[0.0][projection], weights[1.0][projection])


def test_pretrain_then_evaluate(project, monkeypatch):
    monkeypatch.chdir(project)
    params = load_params("params.yaml")
    result = run_clip_pretrain(params)
    record = json.loads((project / "models" / "clip.json").read_text())
    assert record["sha256"] == result.sha256 and record["steps"] == 2 * (48 // 16)
    assert record["config"]["vision_cfg"]["image_size"] == 32
    assert 0.0 <= record["zero_shot_recall_at_k"] <= 100.0
    loaded = load_clip("clips4-test-vit", "synth")
    assert loaded.sha256 == result.sha256

    assert record["quick_gelu"] is False and result.quick_gelu is False

    result = run_evaluate(params, project / "reports")
    maskclip = result.scores["maskclip"]
    assert 0.0 <= maskclip.miou <= 100.0 and 0.0 <= maskclip.pacc <= 100.0 and maskclip.images == 8
    assert list(maskclip.per_class)[:2] == ["grass", "sky"]
    written = json.loads((project / "reports" / "metrics.json").read_text())
    assert written == {"maskclip": {"miou": maskclip.miou, "pacc": maskclip.pacc}}  # DESIGN.md's block layout
    rows = json.loads((project / "reports" / "per_class_iou.json").read_text())
    assert rows[0]["class"] == "grass" and all(set(row) <= {"class", "maskclip"} for row in rows)

    (project / "reports" / "metrics.json").write_text(json.dumps({"stale": {"miou": 1.0}}))
    out = CliRunner().invoke(app, ["evaluate"])
    assert out.exit_code == 0, out.output
    # one stage owns the file: it is rewritten whole, with every method scored in this run
    assert json.loads((project / "reports" / "metrics.json").read_text()) == written
    assert not list((project / "reports").glob(".*tmp*"))  # written through a temporary file and a rename


def test_evaluate_side_by_side_mode_writes_nothing_by_default(project, monkeypatch):
    monkeypatch.chdir(project)
    if not (project / "models" / "clip.pt").is_file():
        run_clip_pretrain(load_params("params.yaml"))
    before = sorted((project / "reports").iterdir()) if (project / "reports").is_dir() else []
    out = CliRunner().invoke(app, ["evaluate", "--dense-mode", "clearclip"])
    assert out.exit_code == 0 and "nothing written" in out.output, out.output
    assert (sorted((project / "reports").iterdir()) if (project / "reports").is_dir() else []) == before
    out = CliRunner().invoke(app, ["evaluate", "--dense-mode", "clearclip", "--reports-dir", "side"])
    assert out.exit_code == 0 and (project / "side" / "metrics.json").is_file(), out.output


def test_evaluate_rejects_bad_dense_mode(project, monkeypatch):
    monkeypatch.chdir(project)
    out = CliRunner().invoke(app, ["evaluate", "--dense-mode", "fancy"])
    assert out.exit_code == 2 and "--dense-mode" in out.output


def test_evaluate_refuses_an_empty_val_split(project, monkeypatch, tmp_path, write_params):
    monkeypatch.chdir(project)
    if not (project / "models" / "clip.pt").is_file():
        run_clip_pretrain(load_params("params.yaml"))
    split_file = project / "data" / "synth" / "ImageSets" / "Segmentation" / "empty.txt"
    split_file.write_text("")
    params = load_params("params.yaml", {"dataset.val_split": "empty"})
    with pytest.raises(Clips4Error, match=r"empty\.txt: split 'empty' \(dataset\.val_split\) lists no images"):
        run_evaluate(params, tmp_path / "reports")
    assert not (tmp_path / "reports").exists()
    dataset = {"root": str(project / "data" / "synth"), "val_split": "empty"}
    params_file = write_params(tmp_path, {**TINY, "dataset": dataset})
    out = CliRunner().invoke(app, ["evaluate", "--params", str(params_file)])
    assert out.exit_code == 1 and "lists no images" in out.output and "Traceback" not in out.output


def test_real_weights_are_recorded_not_trained(tmp_path, monkeypatch, tiny_clip, write_params):
    """With real weights (here a local checkpoint file), clip_pretrain writes a reference, not a model."""
    monkeypatch.chdir(tmp_path)
    sha = tiny_clip(tmp_path / "weights.pt")
    write_params(tmp_path, {"clip": {"model": "clips4-test-vit", "pretrained": str(tmp_path / "weights.pt")}})
    result = run_clip_pretrain(load_params("params.yaml"))
    assert result.sha256 == sha and result.steps == 0
    reference = torch.load(tmp_path / "models" / "clip.pt")
    assert reference == {
        "reference": {
            "model_name": "clips4-test-vit",
            "source": str(tmp_path / "weights.pt"),
            "sha256": sha,
            "quick_gelu": False,
        }
    }
    record = json.loads((tmp_path / "models" / "clip.json").read_text())
    assert record["sha256"] == sha and record["final_loss"] is None
