"""Figures for the superpixel stage: boundary PR curves, superpixel overlays, achievable mIoU vs region count.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state, safe in worker
processes and without a display) and written atomically: to a temporary file in the destination folder, then
``os.replace``, so a reader never sees a half-written PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from skimage.segmentation import mark_boundaries

from clips4.data.types import IGNORE_INDEX
from clips4.figures import new_figure, save_png

#: Iso-F levels drawn behind PR curves.
ISO_F_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def plot_pr_curves(curves: dict[str, dict], path: str | Path) -> Path:
    """Precision-recall curves of several detectors on one plot (``name -> ods()`` output).

    Each curve is drawn with its ODS point marked and ``ODS-F`` / ``AP`` in the legend, over iso-F contours.
    """
    fig = new_figure(5.5, 5.0, dpi=100)
    ax = fig.add_subplot()
    r = np.linspace(0.01, 1.0, 200)
    for level in ISO_F_LEVELS:
        # F = 2PR / (P + R)  <=>  P = F R / (2R - F), defined for R > F / 2.
        rr = r[2 * r > level + 1e-9]
        p = level * rr / (2 * rr - level)
        keep = p <= 1.0
        ax.plot(rr[keep], p[keep], color="0.85", linewidth=0.8, zorder=0)
        ax.annotate(f"F={level:.1f}", (rr[keep][-1], p[keep][-1]), fontsize=6, color="0.6", ha="right", va="bottom")
    for name, result in curves.items():
        (line,) = ax.plot(
            result["curve_recall"],
            result["curve_precision"],
            linewidth=1.5,
            label=f"{name} (ODS-F={result['f']:.3f}, AP={result.get('ap', float('nan')):.3f})",
        )
        ax.plot([result["recall"]], [result["precision"]], "o", color=line.get_color(), markersize=6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("boundary precision-recall (dot: ODS)")
    ax.grid(True, linewidth=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    return save_png(fig, path)


def _label_colours(label: np.ndarray) -> np.ndarray:
    """uint8 label map -> RGB float image; one colour per class id, ``IGNORE_INDEX`` black."""
    palette = np.random.default_rng(0).uniform(0.2, 1.0, (256, 3))
    palette[IGNORE_INDEX] = 0.0
    return palette[label.astype(np.int64)]


def plot_superpixel_overlays(
    images: Sequence[np.ndarray],
    superpixels: Sequence[np.ndarray],
    path: str | Path,
    labels: Sequence[np.ndarray | None] | None = None,
) -> Path:
    """A grid: each image with its superpixel boundaries drawn (yellow), and its ground truth beside it if given.

    The ground truth is coloured per class (ignore pixels black) with the same superpixel boundaries on top, to
    show which boundaries the superpixels miss.
    """
    n = len(images)
    if n != len(superpixels) or (labels is not None and len(labels) != n):
        raise ValueError("images, superpixels (and labels) must have the same length")
    with_gt = labels is not None
    cols = 2 if with_gt else 1
    fig = new_figure(2.4 * cols, 2.4 * max(n, 1), dpi=100)
    for i, (image, segments) in enumerate(zip(images, superpixels, strict=True)):
        ax = fig.add_subplot(max(n, 1), cols, i * cols + 1)
        ax.imshow(mark_boundaries(image, segments, color=(1, 1, 0), mode="inner"))
        ax.set_title(f"{len(np.unique(segments))} superpixels", fontsize=8)
        ax.axis("off")
        if with_gt:
            ax = fig.add_subplot(max(n, 1), cols, i * cols + 2)
            label = labels[i]  # type: ignore[index]
            if label is not None:
                ax.imshow(mark_boundaries(_label_colours(label), segments, color=(1, 1, 1), mode="inner"))
            ax.set_title("ground truth", fontsize=8)
            ax.axis("off")
    return save_png(fig, path)


def plot_accuracy_vs_regions(regions: Sequence[int], miou: Sequence[float], path: str | Path) -> Path:
    """Achievable mIoU (%) against the number of superpixels per image (log-scaled x axis)."""
    order = np.argsort(np.asarray(regions))
    x = np.asarray(regions, dtype=np.float64)[order]
    y = np.asarray(miou, dtype=np.float64)[order]
    fig = new_figure(5.0, 3.8, dpi=100)
    ax = fig.add_subplot()
    ax.plot(x, y, "o-", color="tab:blue")
    for xi, yi in zip(x, y, strict=True):
        ax.annotate(f"{yi:.1f}", (xi, yi), textcoords="offset points", xytext=(0, 5), fontsize=7, ha="center")
    if len(x) and x.min() > 0:
        ax.set_xscale("log")
        ax.set_xticks(x, [str(int(v)) for v in x])
        ax.minorticks_off()
    ax.set_xlabel("superpixels per image")
    ax.set_ylabel("achievable mIoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title("achievable mIoU vs superpixel count")
    ax.grid(True, linewidth=0.3)
    return save_png(fig, path)
