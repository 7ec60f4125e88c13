"""Class-free segmentation scores (CLIP-S4's Table 3): mIoU over the held-out and the known classes, and their
harmonic mean.

Inference labels every pixel among all classes, so both means come from the one confusion matrix of the whole
set (:mod:`clips4.ops.metrics`): a class's IoU is NaN only when its union is empty, and each mean is the nanmean
over its own classes (mmsegmentation's rule, applied to a subset of the classes). ``hiou`` is the harmonic mean
``2 * known * unknown / (known + unknown)`` (0 when either is 0). A mean whose classes all have an empty union
is undefined: it is ``None``, and so is ``hiou``, so that the stage leaves the keys out rather than write NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clips4.errors import Clips4Error


@dataclass(frozen=True)
class ClassFreeScores:
    """Percent; ``None`` where the classes of a mean have no union anywhere in the set."""

    miou_known: float | None
    miou_unknown: float | None
    hiou: float | None


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def harmonic_mean(known: float, unknown: float) -> float:
    """``2ku / (k + u)``; 0 when both are 0."""
    return 0.0 if known + unknown == 0 else 2 * known * unknown / (known + unknown)


def class_free_scores(iou: np.ndarray, names: Sequence[str], held_out: Sequence[str]) -> ClassFreeScores:
    """Known / unknown mIoU and hIoU from per-class IoUs ``[C]`` (percent, NaN = empty union) named by ``names``.

    ``held_out`` are the fold's class names; every one must be among ``names``, which would otherwise score a
    fold that names classes the dataset does not have.
    """
    iou = np.asarray(iou, np.float64)
    missing = [name for name in held_out if name not in names]
    if missing:
        raise Clips4Error(
            f"fold: held-out classes {missing} are not among the scored classes ({', '.join(names)}); "
            "the folds (folds.json) and the dataset's classes must agree: regenerate the world or fix the folds"
        )
    unknown_mask = np.isin(np.asarray(names), list(held_out))
    known = _nanmean(iou[~unknown_mask])
    unknown = _nanmean(iou[unknown_mask])
    hiou = None if known is None or unknown is None else harmonic_mean(known, unknown)
    return ClassFreeScores(miou_known=known, miou_unknown=unknown, hiou=hiou)
