"""Boundary P/R/ODS (BSDS-style one-to-one matching), achievable mIoU of superpixels, and the figures."""

from __future__ import annotations

import numpy as np
import pytest

from clips4.ops.metrics import mean_iou, per_class_iou
from clips4.superpixels.figures import plot_accuracy_vs_regions, plot_pr_curves, plot_superpixel_overlays
from clips4.superpixels.quality import (
    DEFAULT_THRESHOLDS,
    boundary_counts,
    boundary_map,
    ods,
    superpixel_confusion,
    tolerance_px,
)

THRESHOLDS = np.array([0.25, 0.5, 0.75])


def _two_regions() -> np.ndarray:
    """16x16 label map: class 0 left of column 8, class 1 from column 8 on; boundary = column 7."""
    label = np.zeros((16, 16), np.uint8)
    label[:, 8:] = 1
    return label


def _score(strength: np.ndarray, gt: np.ndarray, tolerance: float = 1.0) -> dict:
    return ods(boundary_counts(strength, gt, THRESHOLDS, tolerance), THRESHOLDS)


def test_boundary_map_one_sided_and_ignores_void() -> None:
    gt = boundary_map(_two_regions())
    assert gt.sum() == 16 and gt[:, 7].all()
    label = _two_regions()
    label[:, 7:9] = 255  # a void band between the regions: no boundary left
    assert not boundary_map(label).any()


def test_tolerance_bsds_rule_with_floor() -> None:
    assert tolerance_px((321, 481)) == pytest.approx(0.0075 * np.hypot(321, 481))
    assert tolerance_px((32, 32)) == 1.0


def test_perfect_prediction() -> None:
    gt = boundary_map(_two_regions())
    r = _score(gt.astype(np.float32), gt)
    assert r["precision"] == r["recall"] == r["f"] == 1.0
    assert r["ap"] == pytest.approx(1.0)


def test_one_pixel_shift_matched_only_within_tolerance() -> None:
    gt = boundary_map(_two_regions())
    shifted = np.roll(gt, 1, axis=1).astype(np.float32)
    assert _score(shifted, gt, tolerance=1.0)["f"] == 1.0
    assert _score(shifted, gt, tolerance=0.99)["f"] == 0.0


def test_one_to_one_matching_thick_prediction() -> None:
    gt = boundary_map(_two_regions())
    thick = (gt | np.roll(gt, 1, axis=1)).astype(np.float32)  # 2 px thick: columns 7 and 8
    # Without thinning, each ground-truth pixel matches one of the two predicted pixels only.
    counts = boundary_counts(thick, gt, THRESHOLDS, 1.5, thin=False)
    r = ods(counts, THRESHOLDS)
    assert r["recall"] == 1.0
    assert r["precision"] == pytest.approx(0.5)
    # BSDS thins the prediction first: the 2-px line becomes one line, all of it matched.
    thinned = _score(thick, gt, tolerance=1.5)
    assert thinned["precision"] == 1.0 and thinned["recall"] >= 0.9  # the thinned line may step at an end


def test_one_to_one_matching_two_parallel_lines() -> None:
    gt = boundary_map(_two_regions())
    double = (gt | np.roll(gt, 2, axis=1)).astype(np.float32)  # columns 7 and 9: two lines, thinning keeps both
    r = _score(double, gt, tolerance=2.0)
    assert r["recall"] == 1.0
    assert r["precision"] == pytest.approx(0.5)


def test_empty_prediction() -> None:
    gt = boundary_map(_two_regions())
    counts = boundary_counts(np.zeros(gt.shape, np.float32), gt, THRESHOLDS, 1.0)
    assert (counts[:, :3] == 0).all() and (counts[:, 3] == 16).all()
    r = ods(counts, THRESHOLDS)
    assert r["recall"] == 0.0 and r["precision"] == 1.0 and r["f"] == 0.0


def test_ods_picks_best_threshold() -> None:
    gt = boundary_map(_two_regions())
    strength = np.zeros(gt.shape, np.float32)
    strength[gt] = 0.6  # the true boundary
    strength[:, 2] = 0.3  # a weaker false edge far from it
    strength[:8, 12] = 0.9  # a stronger false edge, half height
    counts = boundary_counts(strength, gt, THRESHOLDS, 1.0)
    assert counts[:, 1].tolist() == [40, 24, 8]
    r = ods(counts, THRESHOLDS)
    # t=0.25: P=16/40, R=1; t=0.5: P=16/24, R=1 (best, F=0.8); t=0.75: P=0, R=0.
    assert r["threshold"] == 0.5
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0 and r["f"] == pytest.approx(0.8)
    assert len(r["curve_precision"]) == len(r["curve_recall"]) == 3
    assert 0.0 < r["ap"] <= 1.0


def test_counts_sum_over_images_and_default_thresholds() -> None:
    gt = boundary_map(_two_regions())
    counts = boundary_counts(gt.astype(np.float32), gt, DEFAULT_THRESHOLDS, 1.0)
    assert counts.shape == (len(DEFAULT_THRESHOLDS), 4) and counts.dtype == np.int64
    assert np.all((DEFAULT_THRESHOLDS > 0) & (DEFAULT_THRESHOLDS < 1))
    r = ods(counts + counts, DEFAULT_THRESHOLDS)
    assert r["f"] == 1.0


def test_superpixels_equal_to_regions_give_full_miou() -> None:
    label = _two_regions()
    conf = superpixel_confusion(label.astype(np.int32) + 7, label, num_classes=3)
    assert conf.shape == (3, 3) and conf.dtype == np.int64
    assert mean_iou(conf) == pytest.approx(100.0)


def test_superpixel_spanning_two_classes_minority_wrong_and_ignore_ignored() -> None:
    label = np.zeros((4, 4), np.uint8)
    label[:, 3] = 1  # 4 pixels of class 1 (minority) among 12 of class 0
    label[0, :] = 255  # ignored: neither votes nor counts
    conf = superpixel_confusion(np.zeros((4, 4), np.int64), label, num_classes=2)
    assert conf.tolist() == [[9, 0], [3, 0]]
    assert per_class_iou(conf)[1] == 0.0
    # A superpixel made only of ignore pixels contributes nothing; ignore pixels never outvote.
    label = np.full((4, 4), 255, np.uint8)
    label[2:, :] = 1
    superpixels = np.zeros((4, 4), np.int64)
    superpixels[2:, :] = 1
    assert superpixel_confusion(superpixels, label, num_classes=2).tolist() == [[0, 0], [0, 8]]


def test_figures_write_png(tmp_path) -> None:
    gt = boundary_map(_two_regions())
    r = _score(gt.astype(np.float32), gt)
    png = b"\x89PNG"
    out = plot_pr_curves({"a": r, "b": _score(np.roll(gt, 1, axis=1).astype(np.float32), gt)}, tmp_path / "pr.png")
    assert out.read_bytes().startswith(png)
    image = np.zeros((16, 16, 3), np.uint8)
    label = _two_regions()
    out = plot_superpixel_overlays([image, image], [label, label], tmp_path / "sp.png", labels=[label, label])
    assert out.read_bytes().startswith(png)
    out = plot_accuracy_vs_regions([8, 32, 128], [40.0, 60.0, 75.0], tmp_path / "acc.png")
    assert out.read_bytes().startswith(png)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acc.png", "pr.png", "sp.png"]  # no temporaries left
