"""The quality of contours and superpixels on the selection split's ground truth (dataset.tune_split, else
val_split), written by the ``ucm`` stage: reports/segments.json and reports/figures/segments_{pr,overlay,accuracy}.png
(see docs/segments.md); another reports folder can be given (``clips4 ucm --reports-dir``).

Kept apart from the stage's store code so that a change to the report does not invalidate superpixels.zarr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from clips4.cache.api import ContoursStore, SuperpixelsStore
from clips4.data.layouts import open_dataset
from clips4.io import atomic_write_json
from clips4.params import Params

#: Superpixel counts at which the achievable accuracy is reported (the accuracy/granularity trade-off).
REGION_COUNTS = (8, 16, 32, 64, 128)
#: Images drawn with their superpixels in reports/figures/segments_overlay.png.
OVERLAY_IMAGES = 8


def write_quality_report(
    params: Params, contours: ContoursStore, superpixels: SuperpixelsStore, reports_dir: Path
) -> dict[str, Any]:
    """Boundary precision/recall/F of the contours and of the UCM, and the achievable segmentation accuracy of
    the superpixels, on the first ``ucm.quality_images`` images of that split; written to ``reports_dir/segments.json``
    with figures in ``reports_dir/figures``."""
    from clips4.ops.metrics import mean_iou, pixel_accuracy
    from clips4.superpixels.figures import plot_accuracy_vs_regions, plot_pr_curves, plot_superpixel_overlays
    from clips4.superpixels.quality import (
        DEFAULT_THRESHOLDS,
        boundary_counts,
        boundary_map,
        ods,
        superpixel_confusion,
        tolerance_px,
    )
    from clips4.superpixels.ucm import owt_ucm, ucm_image

    report, figures = Path(reports_dir) / "segments.json", Path(reports_dir) / "figures"

    # ucm.regions and the contour detector are chosen by this report: the selection split, never the reported one
    split = params.dataset.selection_split
    dataset = open_dataset(params.dataset.name, params.dataset.root, split)
    val_start, val_stop = contours.splits[split]
    rows = range(val_start, min(val_stop, val_start + params.ucm.quality_images))
    num_classes = len(dataset.class_names)
    thresholds = DEFAULT_THRESHOLDS
    counts = {"contours": np.zeros((len(thresholds), 4), np.int64), "ucm": np.zeros((len(thresholds), 4), np.int64)}
    confusion_at = {n: np.zeros((num_classes, num_classes), np.int64) for n in REGION_COUNTS}
    confusion = np.zeros((num_classes, num_classes), np.int64)
    region_counts, overlays = [], []
    scored = 0
    for row in tqdm(rows, desc="segments quality", unit="img", mininterval=1.0):
        label = dataset.read_label(row - val_start)
        if label is None:
            continue
        scored += 1
        contour_map = contours.image(row)
        stored = superpixels.image(row)
        gt = boundary_map(label)
        tolerance = tolerance_px(label.shape)
        counts["contours"] += boundary_counts(contour_map.strength, gt, thresholds, tolerance)
        counts["ucm"] += boundary_counts(ucm_image(stored.ucm), gt, thresholds, tolerance)
        labels = stored.labels
        confusion += superpixel_confusion(labels, label, num_classes)
        region_counts.append(stored.num_regions)
        hierarchy = owt_ucm(contour_map)
        for n in REGION_COUNTS:
            confusion_at[n] += superpixel_confusion(hierarchy.cut(regions=n), label, num_classes)
        if len(overlays) < OVERLAY_IMAGES:
            overlays.append((dataset.read_image(row - val_start), labels, label))
    if not scored:
        result: dict[str, Any] = {"skipped": f"no labelled images in the {split} split"}
    else:
        boundary = {name: ods(total, thresholds) for name, total in counts.items()}
        result = {
            "images": scored,
            "split": split,
            "contours": {"method": params.contours.method, **_summary(boundary["contours"])},
            "ucm": _summary(boundary["ucm"]),
            "superpixels": {
                "regions": params.ucm.regions,
                "threshold": params.ucm.threshold,
                "mean_regions": round(float(np.mean(region_counts)), 2),
                "achievable_miou": round(mean_iou(confusion), 2),
                "achievable_pacc": round(pixel_accuracy(confusion), 2),
            },
            "achievable_miou_at_regions": {str(n): round(mean_iou(c), 2) for n, c in confusion_at.items()},
        }
        figures.mkdir(parents=True, exist_ok=True)
        plot_pr_curves(
            {f"contours ({params.contours.method})": boundary["contours"], "OWT-UCM": boundary["ucm"]},
            figures / "segments_pr.png",
        )
        plot_superpixel_overlays(
            [o[0] for o in overlays],
            [o[1] for o in overlays],
            figures / "segments_overlay.png",
            [o[2] for o in overlays],
        )
        plot_accuracy_vs_regions(
            list(REGION_COUNTS),
            [result["achievable_miou_at_regions"][str(n)] for n in REGION_COUNTS],
            figures / "segments_accuracy.png",
        )
    atomic_write_json(report, result, durable=True)  # a DVC metrics file
    return result


def _summary(boundary: dict[str, Any]) -> dict[str, float]:
    keys = ("f", "precision", "recall", "threshold", "ap")
    return {f"ods_{k}" if k != "ap" else "ap": round(float(boundary[k]), 4) for k in keys}
