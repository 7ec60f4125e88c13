"""Drawing helpers shared by the report's figures: the class colours (one palette, so a class has one colour in every
figure) and legends. Figures and their PNG files come from clips4/figures.py (re-exported here)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from clips4.data.images import voc_palette
from clips4.data.types import IGNORE_INDEX
from clips4.figures import new_figure, save_png

__all__ = ["class_colours", "class_legend", "colour_labels", "new_figure", "save_png"]

#: Ignored pixels are drawn in this grey in every mask figure.
IGNORE_RGB = (0.85, 0.85, 0.85)


def class_colours() -> np.ndarray:
    """float RGB ``[256, 3]`` in [0, 1] by dataset label id: 18 well-separated qualitative colours first (tab10 and
    tab20's light tones, their greys left out so they never look like ignored pixels), then the VOC palette for
    datasets with more classes; ignore (255) light grey."""
    tab10 = [matplotlib.colormaps["tab10"](i)[:3] for i in range(10) if i != 7]
    light = [matplotlib.colormaps["tab20"](2 * i + 1)[:3] for i in range(10) if i != 7]
    colours = voc_palette().astype(np.float64) / 255.0
    colours[: len(tab10) + len(light)] = np.array(tab10 + light)
    colours[IGNORE_INDEX] = IGNORE_RGB
    return colours


def colour_labels(label: np.ndarray) -> np.ndarray:
    """RGB float ``[H, W, 3]`` of a dataset label map ``[H, W]`` (uint8 label ids, 255 ignored)."""
    return class_colours()[np.asarray(label, np.int64)]


def class_legend(fig: Figure, label_ids: Sequence[int], names: Sequence[str], columns: int = 1) -> None:
    """A legend of coloured patches, one per ``(label id, name)``, at the figure's right."""
    colours = class_colours()
    handles = [
        Patch(facecolor=colours[i], edgecolor="0.3", label=name) for i, name in zip(label_ids, names, strict=True)
    ]
    if handles:
        fig.legend(
            handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, ncols=columns, frameon=False
        )
