"""Images below the minimum side (16 px) are refused naming the file, by `data check` and by the image stages
(issue 22, finding 8): a 1x1 image passed `data check` and crashed `clips4 contours` with a numpy traceback."""

from __future__ import annotations

import numpy as np
import yaml
from typer.testing import CliRunner

from clips4.cli import app
from clips4.data.images import MIN_IMAGE_SIDE, write_jpeg, write_palette_png
from tests.fixtures import make_davis, make_voc

MODEL = "clips4-test-vit"


def _shrink_first_train_image(root, size=(1, 1)):
    base = root / "VOCdevkit" / "VOC2012"
    image_id = (base / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", np.full((*size, 3), 128, np.uint8))
    write_palette_png(base / "SegmentationClass" / f"{image_id}.png", np.zeros(size, np.uint8))
    return base / "JPEGImages" / f"{image_id}.jpg"


def test_data_check_refuses_an_image_below_the_minimum_side_naming_it(tmp_path):
    root = make_voc(tmp_path)
    tiny = _shrink_first_train_image(root)
    result = CliRunner().invoke(app, ["data", "check", str(root), "--format", "voc"])
    assert result.exit_code == 1
    assert f"{tiny}: 1x1 pixels, below the {MIN_IMAGE_SIDE}-pixel minimum side" in result.output


def test_data_check_refuses_a_tiny_davis_frame(tmp_path):
    root = make_davis(tmp_path)
    frame = sorted((root / "JPEGImages" / "480p" / "seq0").glob("*.jpg"))[1]
    write_jpeg(frame, np.zeros((4, 24, 3), np.uint8))
    result = CliRunner().invoke(app, ["data", "check", str(root), "--format", "davis"])
    assert result.exit_code == 1 and f"{frame}: 24x4 pixels, below the" in result.output


def test_the_image_stages_refuse_a_1x1_image_in_one_line(tmp_path, monkeypatch):
    from clips4.clip import build_model, model_config, save_clip_checkpoint

    root = make_voc(tmp_path / "data")
    tiny = _shrink_first_train_image(root)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"name": "voc", "root": str(root)}, "clip": {"model": MODEL}}))
    config = model_config(MODEL)
    save_clip_checkpoint(tmp_path / "models" / "clip.pt", build_model(config), MODEL, config)
    monkeypatch.chdir(tmp_path)
    for command in ("contours", "clip-dense"):
        result = CliRunner().invoke(app, [command, "--params", str(params), "--cache-dir", str(tmp_path / "cache")])
        assert result.exit_code == 1, (command, result.output)
        assert isinstance(result.exception, SystemExit), (command, repr(result.exception))  # no traceback
        assert f"{tiny}: 1x1 pixels, below the {MIN_IMAGE_SIDE}-pixel minimum side" in result.output, command
