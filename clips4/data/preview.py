"""A picture of a dataset: images, their colourised masks and captions, in a grid."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clips4.data.images import colorize
from clips4.data.types import IGNORE_INDEX
from clips4.io import atomic_write


def hatch_ignored(mask_rgb: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The coloured mask with its ignored (255) pixels drawn as black and white diagonal stripes, so unlabelled
    regions (the unnamed concepts) stand apart from every class colour."""
    yy, xx = np.indices(label.shape)
    stripes = np.where(((yy + xx) // 3) % 2 == 0, 255, 0).astype(np.uint8)
    out = mask_rgb.copy()
    ignored = label == IGNORE_INDEX
    out[ignored] = stripes[ignored][:, None]
    return out


def write_preview(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    captions: Sequence[str],
    out: str | Path,
    unnamed: Sequence[Sequence[str]] | None = None,
) -> Path:
    """Write a PNG grid: for each sample, the image and its mask side by side, titled by the caption; ignored pixels
    are hatched, and the unnamed concepts of each image (``unnamed``) are listed under its caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    columns = min(4, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, 2 * columns, figsize=(4.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    unnamed = unnamed if unnamed is not None else [()] * count
    for k, (image, label, caption, hidden) in enumerate(zip(images, labels, captions, unnamed, strict=True)):
        row, col = divmod(k, columns)
        axes[row, 2 * col].imshow(image)
        axes[row, 2 * col + 1].imshow(hatch_ignored(colorize(label), label))
        axes[row, 2 * col].set_title("\n".join(textwrap.wrap(caption, 34)), fontsize=7, loc="left")
        if hidden:
            axes[row, 2 * col + 1].set_title("unnamed (255, hatched):\n" + ", ".join(hidden), fontsize=7, loc="left")
    figure.tight_layout()
    atomic_write(out, lambda handle: figure.savefig(handle, format="png", dpi=110))
    plt.close(figure)
    return Path(out)
