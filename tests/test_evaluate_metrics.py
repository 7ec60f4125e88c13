"""The evaluate stage's per-method wiring on planted data: one pass feeds language-driven scores, the kNN and
linear probes (a separable case scores 100, shuffled train labels do not), and the video propagation writes the
official DAVIS layout whose files, read back, give the reported J and F."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clips4.data.davis import open_davis
from clips4.data.images import write_jpeg, write_palette_png
from clips4.data.types import Sample
from clips4.eval.davis import read_annotations, read_results, score_sequence, summarize
from clips4.eval.linear import LinearProbeConfig
from clips4.eval.propagation import PropagationConfig
from clips4.eval.scoring import KnnSettings, ProbeData, score_segmenter
from clips4.eval.video import propagate_video_set, propagation_grid, resample_embeddings
from clips4.inference.language import LanguageClasses

COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], np.uint8)
CLASSES = LanguageClasses((0, 1, 2, 3), ("a", "b", "c", "d"), ("a", "b", "c", "d"))


class ColourEmbedder:
    """Pixel embeddings = the pixel's colour as a unit vector, on a grid 2x coarser than the image; each colour
    of :data:`COLOURS` is a class."""

    def pixel_embeddings(self, images):
        batch = torch.tensor(np.stack(images if isinstance(images, list) else [images])).float() / 255 - 0.45
        pooled = F.avg_pool2d(batch.permute(0, 3, 1, 2), 2)
        return F.normalize(pooled, dim=1).permute(0, 2, 3, 1)

    def class_embeddings(self, names):
        assert list(names) == list(CLASSES.prompts)
        return F.normalize(torch.tensor(COLOURS).float() / 255 - 0.45, dim=1)


def _samples(count: int, seed: int) -> tuple[list[Sample], list[np.ndarray]]:
    """16x16 images of four quadrants, each a random class painted in its colour; superpixels = the quadrants."""
    rng = np.random.default_rng(seed)
    quadrants = np.zeros((16, 16), np.int32)
    quadrants[:8, 8:], quadrants[8:, :8], quadrants[8:, 8:] = 1, 2, 3
    samples = []
    for index in range(count):
        label = rng.integers(0, 4, 4)[quadrants].astype(np.uint8)
        samples.append(Sample(f"i{index}", COLOURS[label], label, CLASSES.names))
    return samples, [quadrants.copy() for _ in range(count)]


def _score(train, val, train_superpixels, val_superpixels):
    return score_segmenter(
        ColourEmbedder(),
        val,
        CLASSES,
        where="planted",
        desc="test",
        data=ProbeData(train_superpixels=train_superpixels, val_superpixels=val_superpixels),
        train=train,
        knn=KnnSettings(train_images=12, k=3, clusters=4, seed=0),
        linear=(12, LinearProbeConfig(pixels_per_image=32, steps=50)),
    )


def test_probes_and_language_score_a_separable_world_perfectly():
    (train, train_sp), (val, val_sp) = _samples(12, 0), _samples(6, 1)
    scores = _score(train, val, train_sp, val_sp)
    assert scores.images == 6 and np.trace(scores.confusion) == scores.confusion.sum() == 6 * 256
    assert scores.knn_miou == pytest.approx(100.0)
    assert scores.linear_miou == pytest.approx(100.0)
    assert scores.avgsim is None and {"language", "probe_inputs", "knn", "linear"} <= set(scores.seconds)


def test_probes_read_the_train_labels():
    (train, train_sp), (val, val_sp) = _samples(12, 0), _samples(6, 1)
    # The same images with their classes renamed by a fixed permutation: the probes learn the wrong names.
    permuted = [Sample(s.image_id, s.image, ((s.label + 1) % 4).astype(np.uint8), s.class_names) for s in train]
    scores = _score(permuted, val, train_sp, val_sp)
    assert scores.knn_miou < 1.0 and scores.linear_miou < 1.0


def _video_world(root, sequences=2, frames=5, size=32):
    """Two squares moving right over a blue background, in the DAVIS layout."""
    names = [f"v{i}" for i in range(sequences)]
    for s, name in enumerate(names):
        for t in range(frames):
            mask = np.zeros((size, size), np.uint8)
            mask[4:12, 2 + 2 * t + s : 10 + 2 * t + s] = 1
            mask[18:28, 16 + t : 26 + t] = 2
            image = COLOURS[np.array([2, 0, 1])[mask]]
            write_jpeg(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", image)
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", mask)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return root


def test_propagated_masks_are_written_in_the_davis_layout_and_score_as_reported(tmp_path):
    videos = open_davis(_video_world(tmp_path / "videos"), "val")
    out = tmp_path / "reports" / "davis" / "colour"
    (out / "stale").mkdir(parents=True)  # a sequence of an earlier run must not survive
    summary = propagate_video_set(ColourEmbedder(), videos, out, PropagationConfig(), stride=4)
    assert sorted(p.name for p in out.iterdir()) == ["v0", "v1"]
    for name in ("v0", "v1"):
        files = sorted((out / name).iterdir())
        assert [f.name for f in files] == [f"{t:05d}.png" for t in range(5)]
        image = Image.open(files[2])
        assert image.mode == "P" and set(np.unique(np.asarray(image))) <= {0, 1, 2}
    assert not list(out.rglob(".*"))  # every file written through a temporary name and a rename
    # Read back and scored independently of the stage: the same J and F.
    objects = []
    for name in ("v0", "v1"):
        frame_ids, truth = read_annotations(videos.root, name)
        objects += score_sequence(name, truth, read_results(out, name, frame_ids))
    again = summarize(objects)
    assert again.objects == summary.objects == 4
    assert again.j_mean == pytest.approx(summary.j_mean) and again.f_mean == pytest.approx(summary.f_mean)
    assert summary.j_mean > 70  # colour features track colour squares (on a grid 4x coarser than the masks)


def test_embeddings_are_resampled_to_the_propagation_grid():
    assert propagation_grid((96, 90), 8) == (12, 12)
    fine = torch.randn(3, 5, 24, 24)
    coarse = resample_embeddings(fine, (12, 12))
    assert coarse.shape == (3, 5, 12, 12)
    expected = F.normalize(F.avg_pool2d(fine, 2), dim=1)  # area averaging on an integer factor
    assert torch.allclose(coarse, expected, atol=1e-6)
    up = resample_embeddings(torch.randn(2, 5, 6, 6), (12, 12))
    assert up.shape == (2, 5, 12, 12) and torch.allclose(up.norm(dim=1), torch.ones(2, 12, 12), atol=1e-5)
