"""Scoring a segmenter on a labelled split: one confusion matrix over the whole split, then the metrics.

A segmenter is any callable that maps a uint8 image ``[H, W, 3]`` to class indices ``[H, W]`` into a
:class:`~clips4.eval.language.LanguageClasses` list; the labels are mapped into the same indices first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from clips4.data.types import Sample
from clips4.errors import Clips4Error
from clips4.eval.language import LanguageClasses
from clips4.eval.metrics import confusion_matrix, mean_iou, per_class_iou, pixel_accuracy

Segmenter = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SegmentationScores:
    """mIoU and pixel accuracy (percent, 2 decimals) and per-class IoU (``None`` where a class has no union)."""

    miou: float
    pacc: float
    per_class: dict[str, float | None]
    images: int


def scores_from_confusion(confusion: np.ndarray, names: Sequence[str], images: int) -> SegmentationScores:
    """The metrics of an accumulated confusion matrix whose rows and columns follow ``names``."""
    iou = per_class_iou(confusion)
    return SegmentationScores(
        miou=round(mean_iou(confusion), 2),
        pacc=round(pixel_accuracy(confusion), 2),
        per_class={
            name: (None if np.isnan(value) else round(float(value), 2)) for name, value in zip(names, iou, strict=True)
        },
        images=images,
    )


def score_segmenter(
    segmenter: Segmenter, samples: Sequence[Sample], classes: LanguageClasses, where: str, desc: str = "evaluate"
) -> SegmentationScores:
    """Score ``segmenter`` on every labelled sample. ``where`` names the split in the error raised when it holds
    no labelled pixel (a NaN mIoU must never be written as a result)."""
    num_classes = len(classes.names)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    images = 0
    for sample in tqdm(samples, desc=desc, unit="img", mininterval=1.0, total=len(samples)):
        if sample.label is None:
            continue
        label = classes.map_labels(sample.label)
        confusion += confusion_matrix(label, segmenter(sample.image), num_classes)
        images += 1
    if confusion.sum() == 0:
        raise Clips4Error(
            f"{where}: no labelled pixel to score ({images} labelled images of {len(samples)}); "
            "point dataset.val_split at a split with ground-truth masks"
        )
    return scores_from_confusion(confusion, classes.names, images)
