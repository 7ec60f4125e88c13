"""A picture of a dataset: images, their colourised masks and captions, in a grid."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clips4.data.images import colorize
from clips4.io import atomic_write


def write_preview(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], captions: Sequence[str], out: str | Path
) -> Path:
    """Write a PNG grid: for each sample, the image and its mask side by side, titled by the caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    columns = min(4, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, 2 * columns, figsize=(4.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (image, label, caption) in enumerate(zip(images, labels, captions, strict=True)):
        row, col = divmod(k, columns)
        axes[row, 2 * col].imshow(image)
        axes[row, 2 * col + 1].imshow(colorize(label))
        axes[row, 2 * col].set_title("\n".join(textwrap.wrap(caption, 34)), fontsize=7, loc="left")
    figure.tight_layout()
    atomic_write(out, lambda handle: figure.savefig(handle, format="png", dpi=110))
    plt.close(figure)
    return Path(out)
