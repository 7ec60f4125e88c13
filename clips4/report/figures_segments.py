"""Segment figures (the paper's Fig. 4): a 2-D map of segment embeddings coloured by their ground-truth class,
and the val segments nearest a class name's text embedding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clips4.data.types import IGNORE_INDEX
from clips4.report.pca import fit_pca
from clips4.report.plotting import class_colours, class_legend, new_figure, save_png

#: Most points drawn per panel of the projection (a fixed-seed subset beyond it, so the plot stays legible).
MAX_POINTS = 2500


def plot_segment_projection(
    panels: Mapping[str, np.ndarray], majority: np.ndarray, class_names: Sequence[str], path: str | Path
) -> Path:
    """One panel per embedding source (``title -> [S, D]``), each its own 2-D PCA of the segments with a ground
    truth class, coloured by that class."""
    labelled = np.flatnonzero(majority != IGNORE_INDEX)
    if len(labelled) > MAX_POINTS:
        labelled = np.sort(np.random.default_rng(0).choice(labelled, MAX_POINTS, replace=False))
    colours = class_colours()[majority[labelled].astype(np.int64)]
    fig = new_figure(3.3 * len(panels), 3.4)
    for col, (title, embeddings) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), col)
        chosen = embeddings[labelled]
        if len(chosen):
            pca = fit_pca(chosen, 2)
            xy = pca(chosen)
            ax.scatter(xy[:, 0], xy[:, 1], s=5, c=colours, linewidths=0)
            ax.set_xlabel(f"PC1 ({100 * pca.explained[0]:.0f}%)", fontsize=8)
            ax.set_ylabel(f"PC2 ({100 * pca.explained[1]:.0f}%)", fontsize=8)
        ax.set_title(f"{title}\n{len(chosen)} segments", fontsize=9)
        ax.tick_params(labelsize=6)
    ids = sorted({int(v) for v in majority[labelled]})
    class_legend(fig, ids, [class_names[i] for i in ids], columns=1 if len(ids) <= 20 else 2)
    fig.tight_layout()
    return save_png(fig, path)


@dataclass(frozen=True)
class RetrievedSegment:
    """One retrieved segment: its crop, cosine to the class text, and its ground-truth majority class name."""

    crop: np.ndarray
    cosine: float
    truth: str


def segment_crop(image: np.ndarray, regions: np.ndarray, region: int, box: Sequence[int], pad: int = 4) -> np.ndarray:
    """The superpixel's bounding box (plus ``pad`` pixels) of ``image``, pixels outside the superpixel dimmed."""
    top, left, bottom, right = (int(v) for v in box)
    top, left = max(0, top - pad), max(0, left - pad)
    bottom, right = min(image.shape[0], bottom + pad), min(image.shape[1], right + pad)
    crop = image[top:bottom, left:right].astype(np.float64) / 255.0
    inside = regions[top:bottom, left:right] == region
    return np.where(inside[..., None], crop, 0.25 + 0.25 * crop)


def plot_retrieval(rows: Mapping[str, Sequence[RetrievedSegment]], path: str | Path) -> Path:
    """One row per ``title`` (a class name and the model that searched), its top segments left to right, each with
    its cosine and ground-truth class (green when it is the searched class, red otherwise)."""
    columns = max((len(found) for found in rows.values()), default=1)
    fig = new_figure(1.5 * columns + 1.6, 1.65 * len(rows) + 0.2)
    for row, (title, found) in enumerate(rows.items()):
        searched = title.split(" · ")[0]
        for col, segment in enumerate(found, start=1):
            ax = fig.add_subplot(len(rows), columns, row * columns + col)
            ax.imshow(segment.crop, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "tab:green" if segment.truth == searched else "tab:red"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2)
            ax.set_xlabel(f"{segment.truth}\ncos {segment.cosine:.2f}", fontsize=7, color=colour)
            if col == 1:
                ax.set_ylabel(title.replace(" · ", "\n"), fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
