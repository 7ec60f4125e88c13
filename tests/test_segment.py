"""Inference: `clips4 segment` and `clips4.Segmenter` on a tiny project (tests/segment_world.py).

The done-when checks of the issue: the same labels as the evaluate stage's segmenters; images of any size,
grayscale or RGBA; unreadable files named and skipped with a non-zero exit; the threshold; clear checkpoint errors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from segment_world import build_segment_project, write_student_checkpoint
from typer.testing import CliRunner

from clips4.cli import app
from clips4.errors import Clips4Error
from clips4.inference import UNLABELLED, Segmenter, parse_classes
from clips4.model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_segment_project(tmp_path_factory.mktemp("segment"))


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


@pytest.fixture(scope="module")
def segmenter(project: Path) -> Segmenter:
    return Segmenter.from_checkpoint(project / "models" / "clips4.pt", device="cpu")


def _class_names(project: Path) -> list[str]:
    return [line for line in (project / "data/synth/classes.txt").read_text().splitlines() if line.strip()]


def _read_labels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("teacher", [False, True], ids=["clips4", "maskclip"])
def test_segment_cli_gives_the_evaluate_stage_labels(in_project, tmp_path, teacher):
    from clips4.clip.loading import compute_device
    from clips4.data.layouts import open_dataset
    from clips4.eval.methods import EvalContext, build_clips4, build_maskclip
    from clips4.inference.language import language_classes, segment_with_text
    from clips4.params import load_params

    params = load_params("params.yaml")
    val = open_dataset("synth", params.dataset.root, "val")
    classes = language_classes("synth", val.class_names)
    context = EvalContext(params, classes, compute_device(), params.clip.dense_mode)
    evaluate_segmenter = (build_maskclip if teacher else build_clips4)(context)
    class_text = evaluate_segmenter.class_embeddings(classes.prompts)

    out = tmp_path / "out"
    args = ["segment", "data/synth/JPEGImages", "--classes", ",".join(classes.names), "--out", str(out)]
    result = CliRunner().invoke(app, args + (["--teacher"] if teacher else []))
    assert result.exit_code == 0, result.output

    predictions = []
    for sample in val:
        written = _read_labels(out / f"{sample.image_id}.labels.png")
        # the scorer's rule (clips4.eval.scoring): nearest class text, scores upsampled to the image
        embeddings = evaluate_segmenter.pixel_embeddings([sample.image])
        expected = segment_with_text(embeddings, class_text, sample.image.shape[:2])[0].cpu().numpy()
        np.testing.assert_array_equal(written, expected)
        predictions.append(written)
    # a meaningful comparison: the labels vary across pixels, and only the val images were compared
    assert len(np.unique(np.stack(predictions))) > 1 and len(predictions) == 4


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 256, (7, 301, 3), dtype=np.uint8),  # thin and wider than the window
        np.random.default_rng(1).integers(0, 256, (130, 50), dtype=np.uint8),  # grayscale [H, W], taller
        np.random.default_rng(2).integers(0, 256, (33, 41, 1), dtype=np.uint8),  # grayscale [H, W, 1]
        np.random.default_rng(3).integers(0, 256, (50, 61, 4), dtype=np.uint8),  # RGBA
        np.random.default_rng(4).random((20, 24, 3)),  # float in [0, 1]
    ],
    ids=["7x301", "gray-2d", "gray-1ch", "rgba", "float"],
)
@pytest.mark.parametrize("teacher", [False, True], ids=["clips4", "maskclip"])
def test_images_of_any_size_and_mode(segmenter, image, teacher):
    model = segmenter.teacher() if teacher else segmenter
    result = model.segment(image, ["grass", "sky", "ball"])
    height, width = image.shape[:2]
    assert result.labels.shape == (height, width) and result.labels.dtype == np.uint8
    assert result.scores.shape == (3, height, width)
    np.testing.assert_array_equal(result.labels, result.scores.argmax(axis=0))
    assert result.labels.max() < 3
    embeddings = model.embed(image)
    assert embeddings.ndim == 3 and embeddings.shape[-1] == 32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(embeddings.shape[:2]), atol=1e-4, rtol=0)


def test_paths_and_pil_images_of_any_mode_give_the_same_labels(segmenter, tmp_path):
    rgba = np.random.default_rng(5).integers(0, 256, (40, 52, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    expected = segmenter.segment(rgba[..., :3], "grass,sky").labels
    np.testing.assert_array_equal(segmenter.segment(path, "grass,sky").labels, expected)
    np.testing.assert_array_equal(segmenter.segment(str(path), ["grass", "sky"]).labels, expected)
    gray = Image.fromarray(rgba[..., 0], mode="L")
    np.testing.assert_array_equal(
        segmenter.segment(gray, "grass,sky").labels, segmenter.segment(np.asarray(gray), "grass,sky").labels
    )


def test_a_batch_of_one_size_gives_the_labels_of_single_images(segmenter):
    images = [np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8) for seed in range(3)]
    batch = segmenter.segment_batch(images, "grass,sky,ball")
    for image, result in zip(images, batch, strict=True):
        single = segmenter.segment(image, "grass,sky,ball")
        np.testing.assert_allclose(result.scores, single.scores, atol=1e-5)
        assert (result.labels == single.labels).mean() > 0.999
    with pytest.raises(Clips4Error, match="different sizes"):
        segmenter.segment_batch([images[0], images[0][:20]], "grass")


def test_threshold_leaves_low_pixels_unlabelled(segmenter, in_project, tmp_path):
    image = np.random.default_rng(6).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    plain = segmenter.segment(image, "grass,sky,ball")
    cut = float(np.median(plain.best))
    thresholded = segmenter.segment(image, "grass,sky,ball", threshold=cut)
    below = plain.best < cut
    assert below.any() and (~below).any()
    assert (thresholded.labels[below] == UNLABELLED).all()
    np.testing.assert_array_equal(thresholded.labels[~below], plain.labels[~below])
    assert (segmenter.segment(image, "grass,sky,ball", threshold=1.01).labels == UNLABELLED).all()
    np.testing.assert_array_equal(segmenter.segment(image, "grass,sky,ball", threshold=-1.01).labels, plain.labels)

    # through the CLI: 255 in the label PNG, grey (no colour) in the overlay, an "unlabelled" legend entry
    Image.fromarray(image).save(tmp_path / "img.png")
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "img.png"), "--classes", "grass,sky,ball", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--threshold", str(cut), "--save-scores"])
    assert result.exit_code == 0, result.output
    labels = _read_labels(out / "img.labels.png")
    np.testing.assert_array_equal(labels == UNLABELLED, below)
    overlay = np.asarray(Image.open(out / "img.overlay.png").convert("RGB")).astype(int)
    scale = overlay.shape[0] // 48  # tiny images are enlarged for the legend's sake
    picture = overlay[: 48 * scale : scale, : 48 * scale : scale]
    grey = np.abs(picture - picture.mean(axis=-1, keepdims=True)).max(axis=-1) <= 1
    assert grey[below].all() and not grey[~below].all()
    saved = np.load(out / "img.scores.npz")
    assert saved["scores"].shape == (3, 48, 48) and list(saved["classes"]) == ["grass", "sky", "ball"]
    np.testing.assert_allclose(saved["scores"].max(axis=0), plain.best, atol=2e-3)


def test_unreadable_files_are_named_and_skipped_the_others_written(in_project, tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((64, 20), 200, np.uint8)).save(folder / "sub" / "b.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    (folder / "notes.txt").write_text("ignored: not an image ending")
    out = tmp_path / "out"
    args = ["segment", str(folder), str(tmp_path / "missing.png"), "--classes", "grass,sky", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "broken.jpg" in result.output and "missing.png" in result.output and "Traceback" not in result.output
    assert "2 input(s) skipped" in result.output
    for name in ("a", "sub/b"):
        assert (out / f"{name}.labels.png").is_file() and (out / f"{name}.overlay.png").is_file()
    assert _read_labels(out / "sub/b.labels.png").shape == (64, 20)
    assert not list(out.rglob("broken*")) and (out / "classes.txt").read_text().count("\n") == 3

    (tmp_path / "empty").mkdir()
    nothing = CliRunner().invoke(app, ["segment", str(tmp_path / "empty"), "--classes", "grass", "--out", str(out)])
    assert nothing.exit_code == 1 and "empty: no image files found" in nothing.output


def test_classes_are_parsed_and_checked(in_project, tmp_path):
    assert parse_classes(" cat, dog ,,moon ") == ("cat", "dog", "moon")
    with pytest.raises(Clips4Error, match="repeated"):
        parse_classes("cat,dog,cat")
    with pytest.raises(Clips4Error, match="no class names"):
        parse_classes(" , ")
    classes_file = tmp_path / "classes.txt"
    classes_file.write_text("# my classes\ngrass\n\nsky  # the top\n")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "x.png"), "--classes-file", str(classes_file), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "classes.txt").read_text().splitlines()[1:] == ["0\t#800000\tgrass", "1\t#008000\tsky"]
    both = CliRunner().invoke(app, [*args, "--classes", "a"])
    assert both.exit_code == 2 and "exactly one of" in both.output


def _rewrite(source: Path, target: Path, **changes) -> Path:
    checkpoint = read_checkpoint(source)
    checkpoint.update(changes)
    save_checkpoint(target, {k: v for k, v in checkpoint.items() if k not in ("format", "format_version")})
    if "format_version" in changes:  # save_checkpoint stamps the current version: write the other one raw
        torch.save(checkpoint, target)
    return target


def test_checkpoint_errors_name_the_file(project, in_project, tmp_path):
    good = project / "models" / "clips4.pt"
    cases = {
        "version": (_rewrite(good, tmp_path / "v.pt", format_version=99), "checkpoint format 99 is not 1"),
        "clip": (
            _rewrite(good, tmp_path / "c.pt", clip={**read_checkpoint(good)["clip"], "weights_sha256": "0" * 64}),
            "trained against CLIP clips4-test-vit",
        ),
        "corrupt": (tmp_path / "t.pt", "not a readable checkpoint"),
        "no clip": (_rewrite(good, tmp_path / "n.pt", clip={}), "records no CLIP teacher"),
    }
    (tmp_path / "t.pt").write_bytes(good.read_bytes()[:5000])
    for name, (path, message) in cases.items():
        with pytest.raises(CheckpointError, match=message) as caught:
            Segmenter.from_checkpoint(path, device="cpu")
        assert str(path) in str(caught.value), name
        result = CliRunner().invoke(app, ["segment", ".", "--classes", "a", "--checkpoint", str(path)])
        assert result.exit_code == 1 and str(path) in result.output and "Traceback" not in result.output, name


def test_the_clip_is_found_beside_the_checkpoint_or_named(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # models/clip.pt is not under the current folder: found beside the checkpoint
    loaded = Segmenter.from_checkpoint(project / "models" / "clips4.pt", device="cpu")
    assert loaded.clip.source == str(project / "models" / "clip.pt")
    lonely = tmp_path / "lonely" / "clips4.pt"
    lonely.parent.mkdir()
    lonely.write_bytes((project / "models" / "clips4.pt").read_bytes())
    with pytest.raises(CheckpointError, match=r"lonely/clips4\.pt: its CLIP teacher clips4-test-vit .* --clip FILE"):
        Segmenter.from_checkpoint(lonely, device="cpu")
    via_option = Segmenter.from_checkpoint(lonely, device="cpu", clip=str(project / "models" / "clip.pt"))
    assert via_option.clip.sha256 == loaded.clip.sha256


def test_another_projects_clip_under_the_current_folder_is_passed_over(project, tmp_path, monkeypatch):
    """The recorded models/clip.pt is relative: from inside another project it names that project's CLIP; the file
    whose sha256 is the recorded one (beside the checkpoint) is used instead."""
    other = tmp_path / "other"
    (other / "models").mkdir(parents=True)
    (other / "models" / "clip.pt").write_bytes(b"another project's weights")
    monkeypatch.chdir(other)
    loaded = Segmenter.from_checkpoint(project / "models" / "clips4.pt", device="cpu")
    assert loaded.clip.source == str(project / "models" / "clip.pt")


def test_a_student_of_another_embedding_size_is_refused(project, tmp_path):
    other = tmp_path / "proj"
    (other / "models").mkdir(parents=True)
    for name in ("params.yaml", "models/clip.pt"):
        (other / name).write_bytes((project / name).read_bytes())
    path = write_student_checkpoint(other)
    checkpoint = read_checkpoint(path)
    _rewrite(path, path, embed_dim=16)
    with pytest.raises(CheckpointError, match=str(path)):
        Segmenter.from_checkpoint(path, device="cpu")
    assert checkpoint["embed_dim"] == 32


def test_import_clips4_stays_light_and_exports_segmenter():
    code = "import sys, clips4; assert 'torch' not in sys.modules and 'Segmenter' in clips4.__all__"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    import clips4
    import clips4.inference.segmenter

    assert clips4.Segmenter is clips4.inference.segmenter.Segmenter
    assert clips4.SegmentResult is clips4.inference.segmenter.SegmentResult


def test_text_cache_keeps_class_embeddings_for_later_runs(in_project, tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    cache = tmp_path / "text"
    args = ["segment", str(tmp_path / "x.png"), "--classes", "moon,river,tower", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--text-cache", str(cache)])
    assert result.exit_code == 0, result.output
    (saved,) = cache.glob("text_*.pt")
    segmenter = Segmenter.from_checkpoint("models/clips4.pt", device="cpu", text_cache=cache)
    torch.testing.assert_close(torch.load(saved), segmenter.class_embeddings(["moon", "river", "tower"]))
