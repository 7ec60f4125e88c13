"""clip_pretrain and evaluate end to end on a tiny world with a tiny CLIP (seconds on a CPU)."""

import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from clips4.cli import app
from clips4.clip import load_clip
from clips4.clip.pretrain import contrastive_loss, run_clip_pretrain
from clips4.data.synth import write_world
from clips4.eval.evaluate import evaluate_maskclip
from clips4.params import load_params

TINY = {
    "synth": {"image_size": 32, "train_images": 48, "val_images": 8},
    "clip": {
        "model": "clips4-test-vit",
        "pretrained": "synth",
        "window": 32,
        "stride": 16,
        "pretrain": {"epochs": 2, "batch_size": 16, "warmup_steps": 1},
    },
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    params = load_params(root / "params.yaml")
    write_world(params.synth, params.seed, root / "data" / "synth", workers=1)
    return root


def test_contrastive_loss_prefers_matching_pairs():
    features = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(math.log(10.0))
    assert contrastive_loss(features, features, scale) < contrastive_loss(features, features.roll(1, 0), scale)


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

    metrics = evaluate_maskclip(params)
    assert 0.0 <= metrics["miou"] <= 100.0 and 0.0 <= metrics["pacc"] <= 100.0
    assert list(metrics["per_class"])[:2] == ["grass", "sky"]

    (project / "reports").mkdir(exist_ok=True)
    (project / "reports" / "metrics.json").write_text(json.dumps({"davis": {"j_mean": 1.0}}))
    out = CliRunner().invoke(app, ["evaluate", "--method", "maskclip"])
    assert out.exit_code == 0, out.output
    written = json.loads((project / "reports" / "metrics.json").read_text())
    assert written["davis"] == {"j_mean": 1.0}  # other methods' keys are kept
    assert set(written["maskclip"]) == {"miou", "pacc"}
    assert written["maskclip"]["miou"] == metrics["miou"]
    assert (project / "reports" / "maskclip_per_class.json").is_file()


def test_evaluate_rejects_unknown_method(project, monkeypatch):
    monkeypatch.chdir(project)
    out = CliRunner().invoke(app, ["evaluate", "--method", "oracle"])
    assert out.exit_code == 2 and "--method" in out.output
    out = CliRunner().invoke(app, ["evaluate", "--dense-mode", "fancy"])
    assert out.exit_code == 2 and "--dense-mode" in out.output


def test_real_weights_are_recorded_not_trained(tmp_path, monkeypatch):
    """With real weights (here a local checkpoint file), clip_pretrain writes a reference, not a model."""
    from clips4.clip import build_model, model_config, save_clip_checkpoint

    monkeypatch.chdir(tmp_path)
    config = model_config("clips4-test-vit")
    sha = save_clip_checkpoint(tmp_path / "weights.pt", build_model(config), "clips4-test-vit", config)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"clip": {"model": "clips4-test-vit", "pretrained": str(tmp_path / "weights.pt")}})
    )
    result = run_clip_pretrain(load_params("params.yaml"))
    assert result.sha256 == sha and result.steps == 0
    reference = torch.load(tmp_path / "models" / "clip.pt")
    assert reference == {
        "reference": {"model_name": "clips4-test-vit", "source": str(tmp_path / "weights.pt"), "sha256": sha}
    }
    record = json.loads((tmp_path / "models" / "clip.json").read_text())
    assert record["sha256"] == sha and record["final_loss"] is None
