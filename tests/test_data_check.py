"""`clips4 data check` exits 0 on a clean dataset and non-zero naming each broken file."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clips4.cli import app
from clips4.data.images import write_palette_png
from clips4.data.synth import write_world
from clips4.params import SynthParams
from tests.fixtures import make_cocostuff, make_context, make_davis, make_voc

runner = CliRunner()


def check(root, fmt):
    return runner.invoke(app, ["data", "check", str(root), "--format", fmt])


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("world") / "synth"
    write_world(SynthParams(image_size=48, train_images=6, val_images=3, tune_images=2), seed=0, out=root, workers=1)
    return root


@pytest.mark.parametrize(
    ("builder", "fmt"),
    [(make_voc, "voc"), (make_context, "context"), (make_cocostuff, "cocostuff"), (make_davis, "davis")],
)
def test_clean_fixtures_pass(tmp_path, builder, fmt):
    result = check(builder(tmp_path), fmt)
    assert result.exit_code == 0, result.output
    assert "no problems" in result.output


def test_clean_synth_world_passes(synth_root):
    result = check(synth_root, "synth")
    assert result.exit_code == 0, result.output


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_truncated_jpeg_is_named(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path / "synth")
    victim = root / "JPEGImages" / "train_000002.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    result = check(root, "synth")
    assert result.exit_code != 0
    assert "train_000002.jpg" in result.output and "truncated" in result.output


def test_deleted_mask_is_named(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path / "synth")
    (root / "SegmentationClass" / "val_000001.png").unlink()
    result = check(root, "synth")
    assert result.exit_code != 0
    assert "val_000001.png: file not found" in result.output


def test_label_77_is_named(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path / "synth")
    mask_path = root / "SegmentationClass" / "train_000004.png"
    label = np.asarray(Image.open(mask_path)).copy()
    label[:3, :3] = 77
    write_palette_png(mask_path, label)
    result = check(root, "synth")
    assert result.exit_code != 0
    assert "train_000004.png" in result.output and "77" in result.output


def test_caption_disagreeing_with_mask_is_named(synth_root, tmp_path):
    root = _copy(synth_root, tmp_path / "synth")
    lines = (root / "captions.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"classes": [', '"classes": ["kite", ', 1) if "kite" not in lines[0] else lines[0]
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    result = check(root, "synth")
    assert result.exit_code != 0
    assert "train_000000.png" in result.output and "caption" in result.output


def test_voc_wrong_size_and_missing_id(tmp_path):
    make_voc(tmp_path)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    write_palette_png(base / "SegmentationClass" / "2007_val01.png", np.zeros((5, 5), np.uint8))
    (base / "JPEGImages" / "2007_train00.jpg").unlink()
    result = check(tmp_path, "voc")
    assert result.exit_code != 0
    assert "2007_val01.png: mask is 5x5 but its image is 28x20" in result.output
    assert "2007_train00.jpg: file not found" in result.output


def test_davis_non_palette_mask_is_named(tmp_path):
    make_davis(tmp_path)
    bad = tmp_path / "Annotations" / "480p" / "seq1" / "00001.png"
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(bad)
    result = check(tmp_path, "davis")
    assert result.exit_code != 0
    assert "seq1/00001.png" in result.output and "palette" in result.output


def test_empty_split_is_refused(tmp_path):
    root = make_voc(tmp_path)
    split_file = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    split_file.write_text("\n")
    result = check(root, "voc")
    assert result.exit_code == 1
    assert f"{split_file}: split 'val' lists no images" in result.output


def test_empty_davis_split_is_refused(tmp_path):
    root = make_davis(tmp_path)
    split_file = next((root / "ImageSets" / "2017").glob("*.txt"))
    split_file.write_text("")
    result = check(root, "davis")
    assert result.exit_code == 1 and "lists no sequences" in result.output, result.output
