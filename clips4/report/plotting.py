"""Drawing helpers shared by the report's figures: a bare Agg figure, deterministic atomic PNG writes, and the
class colours (one palette, so a class has one colour in every figure)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from clips4.data.images import voc_palette
from clips4.data.types import IGNORE_INDEX

#: Ignored pixels are drawn in this grey in every mask figure.
IGNORE_RGB = (0.85, 0.85, 0.85)


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot state: safe without a display and in any thread)."""
    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` through a temporary file and ``os.replace``. The PNG carries no software
    version or date (``metadata``), so the same inputs give the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", bbox_inches="tight", metadata={"Software": None})
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a report figure is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
