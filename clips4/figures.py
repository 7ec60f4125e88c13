"""Figure files shared by the ucm stage's plots (clips4/superpixels/figures.py) and the report (clips4/report/):
a bare Agg figure and a deterministic, atomic PNG write."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clips4.io import atomic_write


def new_figure(width: float, height: float, dpi: int = 80) -> Figure:
    """A figure on its own Agg canvas (no pyplot state: safe without a display, in worker processes and threads)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` through :func:`clips4.io.atomic_write`, so a reader never sees a half-written PNG.
    The PNG carries no software version or date, so the same inputs give the same bytes."""
    return atomic_write(
        path, lambda handle: fig.savefig(handle, format="png", bbox_inches="tight", metadata={"Software": None})
    )
