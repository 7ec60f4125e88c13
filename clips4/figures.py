"""Figure files shared by the ucm stage's plots (clips4/superpixels/figures.py) and the report (clips4/report/):
a bare Agg figure and a deterministic, atomic PNG write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width: float, height: float, dpi: int = 80) -> Figure:
    """A figure on its own Agg canvas (no pyplot state: safe without a display, in worker processes and threads)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` through a temporary file in the same folder and ``os.replace``, so a reader never
    sees a half-written PNG. The PNG carries no software version or date, so the same inputs give the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", bbox_inches="tight", metadata={"Software": None})
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a figure is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
