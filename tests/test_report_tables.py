"""The report's text parts: the side-by-side metrics table, the per-class table, reading evaluate's JSON files,
and the small numeric helpers behind the figures (PCA, superpixel majority labels, batching, frame choice)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clips4.errors import Clips4Error
from clips4.ops.batches import same_size_batches
from clips4.report.inputs import read_metrics, read_per_class
from clips4.report.markdown import FigureEntry, render_report
from clips4.report.pca import fit_pca, to_unit_range
from clips4.report.segments import bounding_boxes, majority_labels
from clips4.report.tables import metrics_table, per_class_table
from clips4.report.video import pick_frames


def _cells(table: str) -> dict[str, list[str]]:
    """``{first cell: other cells}`` of a Markdown table's body rows."""
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows}


def test_metrics_table_prints_the_values_of_metrics_json_and_names_methods_not_run():
    metrics = {
        "maskclip": {"miou": 51.24, "pacc": 76.7, "davis_j_mean": 40.5},
        "clips4": {"miou": 61.2, "pacc": 86.57, "avgsim": 0.8051, "davis_j_mean": 44.25},
    }
    table = metrics_table(metrics)
    header = table.splitlines()[0]
    assert header == "| metric | MaskCLIP | MaskCLIP+-style | CLIP-S4 |"
    cells = _cells(table)
    assert cells["mIoU, language-driven (%)"] == ["51.24", "not run", "61.20"]
    assert cells["DAVIS J-mean (%)"] == ["40.50", "not run", "44.25"]
    assert cells["avgsim (cosine to CLIP)"] == ["–", "not run", "0.8051"]  # MaskCLIP has no avgsim
    for key, title in (("miou", "mIoU, language-driven (%)"), ("pacc", "pixel accuracy (%)")):
        assert float(cells[title][2]) == metrics["clips4"][key]
    # keys no method has are left out, never shown empty
    assert "hIoU, harmonic mean (%)" not in cells and "kNN mIoU (%)" not in cells


def test_metrics_table_keeps_an_experiments_extra_block_and_key():
    table = metrics_table({"maskclip": {"miou": 50.0, "new_key": 1.5}, "ablation": {"miou": 55.0}})
    assert table.splitlines()[0].endswith("| CLIP-S4 | ablation |")
    cells = _cells(table)
    assert cells["mIoU, language-driven (%)"] == ["50.00", "not run", "not run", "55.00"]
    assert cells["new_key"] == ["1.50", "not run", "not run", "–"]


def test_per_class_table_marks_held_out_classes_and_classes_without_iou():
    rows = [{"class": "grass", "maskclip": 58.91, "clips4": 79.59}, {"class": "ball", "maskclip": 3.0}]
    table = per_class_table(rows, {"maskclip": {}, "clips4": {}}, held_out=("ball",))
    cells = _cells(table)
    assert cells["grass"] == ["58.91", "not run", "79.59"]
    assert cells["ball (held out)"] == ["3.00", "not run", "–"]


def test_missing_or_broken_results_name_the_file_and_the_command(tmp_path):
    with pytest.raises(Clips4Error, match=r"metrics\.json: missing; run `clips4 evaluate`"):
        read_metrics(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(Clips4Error, match=r"metrics\.json: not valid JSON"):
        read_metrics(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text(json.dumps({"maskclip": {"miou": "high"}}))
    with pytest.raises(Clips4Error, match=r"maskclip\.miou is 'high', not a number"):
        read_metrics(tmp_path / "metrics.json")
    (tmp_path / "per_class_iou.json").write_text(json.dumps({"grass": 1}))
    with pytest.raises(Clips4Error, match=r"per_class_iou\.json: expected a list"):
        read_per_class(tmp_path / "per_class_iou.json")


def test_report_links_drawn_figures_and_says_why_others_are_not():
    text = render_report(
        ["dataset: synth"],
        "| a |\n|--|",
        "| b |\n|--|",
        [FigureEntry("One", "caption one", file="figures/report/one.png"), FigureEntry("Two", "", missing="not run")],
    )
    assert "![One](figures/report/one.png)" in text and "Not drawn: not run" in text
    assert render_report(["x"], "t", "t", []) == render_report(["x"], "t", "t", [])


def test_pca_finds_the_direction_of_largest_variance_with_a_fixed_sign():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)) * np.array([5.0, 1.0, 0.1])
    pca = fit_pca(x, 2)
    assert np.allclose(np.abs(pca.components[0]), [1, 0, 0], atol=0.02)
    assert pca.components[0][0] > 0 and pca.explained[0] > 0.9
    flipped = fit_pca(-x, 2)  # the same cloud mirrored: the same components, not their negatives
    assert np.allclose(flipped.components, pca.components, atol=1e-6)
    scaled = to_unit_range(pca(x))
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert fit_pca(np.ones((1, 4)), 3).components.shape == (3, 4)  # one point: zero components, no error


def test_superpixel_majority_labels_and_boxes():
    regions = np.array([[0, 0, 1], [0, 1, 1], [2, 2, 2]])
    label = np.array([[3, 3, 5], [255, 4, 5], [255, 255, 255]], np.uint8)
    assert majority_labels(regions, label, 4).tolist() == [3, 5, 255, 255]  # region 3 is empty, 2 all ignored
    assert majority_labels(regions, None, 2).tolist() == [255, 255]
    assert bounding_boxes(regions, 4).tolist() == [[0, 0, 2, 2], [0, 1, 2, 3], [2, 0, 3, 3], [0, 0, 0, 0]]


def test_batches_group_consecutive_images_of_one_size():
    images = [np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((5, 4, 3)), np.zeros((4, 4, 3))]

    def shape(index):
        return images[index].shape

    assert list(same_size_batches(range(4), shape, 16)) == [[0, 1], [2], [3]]
    assert list(same_size_batches(range(2), shape, 1)) == [[0], [1]]


def test_video_frames_are_spread_over_those_with_results():
    frames = [f"{i:05d}" for i in range(12)]
    assert pick_frames(frames, set(frames)) == ["00000", "00004", "00007", "00011"]
    assert pick_frames(frames, {"00003", "00005"}) == ["00003", "00005"]
