"""Per-pixel figures: pixel embeddings as PCA-RGB images (the paper's Fig. 1a) and predicted against true masks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from clips4.report.pca import fit_pca, to_unit_range
from clips4.report.plotting import class_legend, colour_labels, new_figure, save_png


def pca_rgb(embeddings: Sequence[torch.Tensor]) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB images ``[h, w, 3]`` in [0, 1] of pixel embeddings ``[h, w, D]``: one PCA fit over the pixels of all
    the given images, its top 3 components scaled to their joint 1-99 percentile range (so colours compare across
    images of one method). Also the fraction of variance each component explains."""
    flat = [e.reshape(-1, e.shape[-1]).numpy() for e in embeddings]
    pca = fit_pca(np.concatenate(flat), 3)
    colours = to_unit_range(pca(np.concatenate(flat)))
    sizes = np.cumsum([0, *(len(f) for f in flat)])
    images = [colours[a:b].reshape(*e.shape[:2], 3) for a, b, e in zip(sizes[:-1], sizes[1:], embeddings, strict=True)]
    return images, pca.explained


def plot_pca_embeddings(
    images: Sequence[np.ndarray], embeddings: Mapping[str, Sequence[torch.Tensor]], path: str | Path
) -> Path:
    """Rows: images; columns: the image, then each method's pixel embeddings as PCA-RGB (one fit per method)."""
    columns = 1 + len(embeddings)
    fig = new_figure(1.9 * columns, 1.9 * len(images) + 0.3)
    rendered = {title: pca_rgb(values) for title, values in embeddings.items()}
    for row, image in enumerate(images):
        ax = fig.add_subplot(len(images), columns, row * columns + 1)
        ax.imshow(image)
        ax.set_axis_off()
        if row == 0:
            ax.set_title("image", fontsize=9)
        for col, (title, (rgb, explained)) in enumerate(rendered.items(), start=2):
            ax = fig.add_subplot(len(images), columns, row * columns + col)
            height, width = image.shape[:2]
            ax.imshow(rgb[row], interpolation="nearest", extent=(0, width, height, 0))
            ax.set_axis_off()
            if row == 0:
                ax.set_title(f"{title}\n(PCA {100 * explained.sum():.0f}% var.)", fontsize=9)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return save_png(fig, path)


def plot_predictions(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray | None],
    predictions: Mapping[str, Sequence[np.ndarray]],
    class_names: Sequence[str],
    path: str | Path,
) -> Path:
    """Rows: images; columns: the image, its ground truth, each method's prediction (dataset label ids, the
    dataset palette; ignored pixels grey); a legend of the classes that appear."""
    columns = 2 + len(predictions)
    fig = new_figure(1.9 * columns, 1.9 * len(images) + 0.3)
    shown: set[int] = set()
    for row, image in enumerate(images):
        panels: list[tuple[str, np.ndarray | None]] = [("ground truth", truths[row])]
        panels += [(title, masks[row]) for title, masks in predictions.items()]
        ax = fig.add_subplot(len(images), columns, row * columns + 1)
        ax.imshow(image)
        ax.set_axis_off()
        if row == 0:
            ax.set_title("image", fontsize=9)
        for col, (title, mask) in enumerate(panels, start=2):
            ax = fig.add_subplot(len(images), columns, row * columns + col)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=9)
            if mask is None:
                ax.text(0.5, 0.5, "no label", ha="center", va="center", fontsize=8, transform=ax.transAxes)
                continue
            ax.imshow(colour_labels(mask), interpolation="nearest")
            shown.update(int(v) for v in np.unique(mask) if v < len(class_names))
    ids = sorted(shown)
    class_legend(fig, ids, [class_names[i] for i in ids], columns=1 if len(ids) <= 20 else 2)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return save_png(fig, path)
