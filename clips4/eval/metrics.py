"""Segmentation metrics from one confusion matrix accumulated over a whole evaluation set.

Conventions (mmsegmentation's): pixels labelled 255 are ignored; the IoU of a class is
TP / (TP + FP + FN); mIoU averages over the classes present in the ground truth of the set (a class
never present has no IoU, instead of counting as 0); pixel accuracy is correct / labelled pixels.
"""

from __future__ import annotations

import numpy as np

from clips4.data.types import IGNORE_INDEX


def confusion_matrix(label: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` counts, rows = ground truth, columns = prediction; 255 ignored."""
    valid = label != IGNORE_INDEX
    index = label[valid].astype(np.int64) * num_classes + prediction[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class in percent; NaN for classes absent from the ground truth."""
    true_positive = np.diag(confusion).astype(np.float64)
    ground_truth = confusion.sum(axis=1)
    union = ground_truth + confusion.sum(axis=0) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = 100.0 * true_positive / union
    iou[ground_truth == 0] = np.nan
    return iou


def mean_iou(confusion: np.ndarray) -> float:
    return float(np.nanmean(per_class_iou(confusion)))


def pixel_accuracy(confusion: np.ndarray) -> float:
    return float(100.0 * np.trace(confusion) / max(1, confusion.sum()))
