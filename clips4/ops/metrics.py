"""Segmentation metrics from one confusion matrix accumulated over a whole evaluation set.

Conventions (mmsegmentation's ``IoUMetric``): pixels labelled 255 are ignored; intersection and union are
summed over the whole set before dividing; the IoU of a class is TP / (TP + FP + FN), and it is NaN only
when that union is empty (the class is neither in the ground truth nor predicted anywhere). A class that is
predicted but absent from the ground truth therefore counts as 0. mIoU is the mean of the non-NaN IoUs;
pixel accuracy is correct / labelled pixels.
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
    """IoU per class in percent; NaN only for classes whose union is empty (absent and never predicted)."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = 100.0 * true_positive / union
    iou[union == 0] = np.nan
    return iou


def mean_iou(confusion: np.ndarray) -> float:
    """The mean of the per-class IoUs that are defined (mmsegmentation's ``nanmean``), in percent."""
    iou = per_class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
    return float(100.0 * np.trace(confusion) / max(1, confusion.sum()))
