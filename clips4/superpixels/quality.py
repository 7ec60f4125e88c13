"""Quality of contour maps and superpixels against semantic ground truth.

Boundary quality follows the BSDS500 benchmark's protocol (Arbelaez et al., PAMI 2011), own implementation:

- ground-truth boundaries are the pixels where the label changes (:func:`boundary_map`);
- a contour map is binarised at each threshold (``strength >= t``), and its pixels are matched ONE-TO-ONE to
  ground-truth boundary pixels lying within ``tolerance`` pixels (Euclidean, inclusive), by a maximum bipartite
  matching: a predicted pixel can explain at most one ground-truth pixel and vice versa, so a 2-px thick response
  is not rewarded twice (BSDS solves a min-cost assignment; we maximise the number of matches, which is what the
  counts measure);
- counts are summed over the dataset and precision / recall / F read off at the single best threshold (ODS).

Superpixel quality is the *achievable* segmentation accuracy: every superpixel takes the majority ground-truth class
of its labelled pixels (an oracle labelling); the mIoU of that labelling bounds what any method that assigns one
class per superpixel can reach.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_bipartite_matching

from clips4.data.types import IGNORE_INDEX
from clips4.ops.metrics import confusion_matrix

#: 25 evenly spaced levels in (0, 1): 0.02, 0.06, ..., 0.98 (bin centres of 25 equal bins).
DEFAULT_THRESHOLDS = (np.arange(25) + 0.5) / 25

#: BSDS's maxDist: the matching tolerance as a fraction of the image diagonal.
TOLERANCE_FRACTION = 0.0075


def boundary_map(label: np.ndarray, ignore: int = IGNORE_INDEX) -> np.ndarray:
    """Ground-truth boundary pixels ``bool [H, W]``: the label differs from the right or lower 4-neighbour.

    One-sided (only the upper/left pixel of a differing pair is marked), so boundaries are 1 px thick; pairs with
    an ``ignore`` pixel are not boundaries (VOC's void bands around objects would otherwise count twice).
    """
    out = np.zeros(label.shape, dtype=bool)
    valid = label != ignore
    right = (label[:, :-1] != label[:, 1:]) & valid[:, :-1] & valid[:, 1:]
    down = (label[:-1] != label[1:]) & valid[:-1] & valid[1:]
    out[:, :-1] |= right
    out[:-1] |= down
    return out


def tolerance_px(shape: tuple[int, ...]) -> float:
    """Matching tolerance in pixels: BSDS's maxDist = 0.0075 x the image diagonal, at least 1 px.

    The floor keeps small images meaningful: without it a 96x96 image would get 1.02 px (still fine) but a 64x64
    one 0.68 px, i.e. exact-position matching only, stricter than BSDS is on its 481x321 images (4.3 px).
    """
    h, w = shape[:2]
    return max(1.0, TOLERANCE_FRACTION * math.hypot(h, w))


def _disc_offsets(tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets (dy, dx) with dy^2 + dx^2 <= tolerance^2."""
    r = math.floor(tolerance)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= tolerance**2 + 1e-9
    return dy[keep], dx[keep]


def _candidate_pairs(
    candidate: np.ndarray, gt_boundary: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """All (ground-truth pixel, candidate pixel) pairs within ``tolerance``, vectorised over the disc.

    Returns ``gt_index`` (into the ground-truth pixels in row-major order), ``pixel`` (flat index of the candidate
    prediction) and the number of ground-truth pixels.
    """
    h, w = gt_boundary.shape
    gy, gx = np.nonzero(gt_boundary)
    dy, dx = _disc_offsets(tolerance)
    py = gy[:, None] + dy[None, :]
    px = gx[:, None] + dx[None, :]
    inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    keep = inside & candidate[np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)]
    gt_index = np.broadcast_to(np.arange(len(gy))[:, None], keep.shape)[keep]
    return gt_index, (py * w + px)[keep], len(gy)


def boundary_counts(
    strength: np.ndarray, gt_boundary: np.ndarray, thresholds: np.ndarray, tolerance: float, *, thin: bool = True
) -> np.ndarray:
    """``int64 [T, 4]`` per threshold: (matched predictions, predictions, matched ground truth, ground truth).

    Predicted pixels are ``strength >= t``, thinned to one-pixel-wide lines first as the BSDS benchmark does
    (``thin=True``), so a detector that marks both pixels flanking a boundary is not charged twice. They are
    matched one-to-one to ``gt_boundary`` pixels within ``tolerance`` px by a maximum bipartite matching (so
    matched predictions == matched ground truth here; both columns are kept so that counts from several
    annotators could be summed as BSDS does).
    """
    from skimage.morphology import thin as thin_lines

    thresholds = np.asarray(thresholds, dtype=np.float64)
    strength = np.asarray(strength)
    out = np.zeros((len(thresholds), 4), dtype=np.int64)
    out[:, 3] = int(gt_boundary.sum())
    previous: tuple[bytes, int, int] | None = None
    for i, level in enumerate(thresholds.tolist()):
        predicted = strength >= level
        if thin and predicted.any():
            predicted = thin_lines(predicted)
        key = np.packbits(predicted).tobytes()
        if previous is not None and previous[0] == key:  # same prediction as the last threshold
            out[i, 0] = out[i, 2] = previous[1]
            out[i, 1] = previous[2]
            continue
        n_pred = int(predicted.sum())
        matched = 0
        if n_pred and out[i, 3]:
            gt_index, pixel, n_gt = _candidate_pairs(predicted, gt_boundary, tolerance)
            if len(pixel):
                pred_pixels, pred_index = np.unique(pixel, return_inverse=True)
                graph = sp.csr_matrix(
                    (np.ones(len(pixel), dtype=np.int8), (gt_index, pred_index)), shape=(n_gt, len(pred_pixels))
                )
                matched = int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())
        out[i, 0] = out[i, 2] = matched
        out[i, 1] = n_pred
        previous = (key, matched, n_pred)
    return out


def _precision_recall(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P = matched predictions / predictions (1 without predictions), R = matched GT / GT (1 without GT), F."""
    counts = np.asarray(counts, dtype=np.float64)
    precision = np.where(counts[:, 1] > 0, counts[:, 0] / np.maximum(counts[:, 1], 1), 1.0)
    recall = np.where(counts[:, 3] > 0, counts[:, 2] / np.maximum(counts[:, 3], 1), 1.0)
    denom = precision + recall
    f = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    return precision, recall, f


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the PR curve, PASCAL VOC (2010+) style: precision replaced by its envelope (the best precision at
    any recall >= r), integrated exactly over recall from 0 to the highest recall reached (no credit beyond it)."""
    order = np.argsort(recall, kind="stable")
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64)[order]])
    p = np.asarray(precision, dtype=np.float64)[order]
    envelope = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum(np.diff(r) * envelope))


def ods(counts_sum: np.ndarray, thresholds: np.ndarray) -> dict:
    """Optimal Dataset Scale: P / R / F at the one threshold with the best F over the summed ``[T, 4]`` counts.

    The best threshold is picked among ``thresholds`` (no interpolation between them as BSDS does; ties go to the
    lowest threshold). Also returns the PR curve in ascending threshold order (``curve_precision``,
    ``curve_recall``, ``curve_threshold``) and ``ap`` (:func:`average_precision`).
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    order = np.argsort(thresholds, kind="stable")
    thresholds = thresholds[order]
    precision, recall, f = _precision_recall(np.asarray(counts_sum)[order])
    best = int(np.argmax(f))
    return {
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "f": float(f[best]),
        "threshold": float(thresholds[best]),
        "ap": average_precision(precision, recall),
        "curve_precision": precision.tolist(),
        "curve_recall": recall.tolist(),
        "curve_threshold": thresholds.tolist(),
    }


def superpixel_confusion(superpixels: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """``int64 [C, C]`` confusion (rows = ground truth) of the oracle labelling of ``superpixels``.

    Each superpixel takes the majority class of its labelled pixels (``IGNORE_INDEX`` pixels do not vote; ties go to
    the lowest class id); a superpixel without labelled pixels contributes nothing. Summed over a set, the mIoU of
    this confusion is the *achievable mIoU* of the superpixels.
    """
    _, segment = np.unique(superpixels, return_inverse=True)
    segment = segment.reshape(-1)
    flat_label = label.reshape(-1).astype(np.int64)
    valid = flat_label != IGNORE_INDEX
    if segment.size == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    n_segments = int(segment.max()) + 1
    vote_index = segment[valid] * num_classes + flat_label[valid]
    votes = np.bincount(vote_index, minlength=n_segments * num_classes).reshape(n_segments, num_classes)
    majority = votes.argmax(axis=1)
    return confusion_matrix(flat_label, majority[segment], num_classes).astype(np.int64)
