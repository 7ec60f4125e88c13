"""Video figure: propagated object masks (reports/davis/<method>/...) on a few frames, beside the ground truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clips4.report.plotting import new_figure, save_png


@dataclass(frozen=True)
class VideoPanel:
    """One sequence: the chosen frames (RGB), their ids, the true masks and each method's (object-id maps)."""

    name: str
    frame_ids: Sequence[str]
    frames: Sequence[np.ndarray]
    truth: Sequence[np.ndarray]
    predicted: Mapping[str, Sequence[np.ndarray]]


#: Object ids 1, 2, ... are tinted in these saturated colours (cycled), chosen to stand out on natural frames.
OBJECT_COLOURS = np.array(
    [(1.0, 0.0, 0.0), (0.0, 0.45, 1.0), (1.0, 0.9, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, 0.9), (1.0, 0.5, 0.0)]
)


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.8) -> np.ndarray:
    """``frame`` faded to grey, with each object id (> 0) painted in its colour (:data:`OBJECT_COLOURS`, cycled):
    on the faded frame the masks stand out whatever the objects' own colours."""
    rgb = frame.astype(np.float64) / 255.0
    faded = 0.35 + 0.4 * rgb.mean(axis=-1, keepdims=True)
    ids = np.asarray(mask, np.int64)
    colours = OBJECT_COLOURS[(ids - 1) % len(OBJECT_COLOURS)]
    return np.where((ids > 0)[..., None], (1 - alpha) * rgb + alpha * colours, faded)


def plot_propagation(videos: Sequence[VideoPanel], path: str | Path) -> Path:
    """For each video, a row of ground truth then a row per method; columns are the chosen frames."""
    rows = sum(1 + len(video.predicted) for video in videos)
    columns = max(len(video.frames) for video in videos)
    fig = new_figure(1.7 * columns + 1.2, 1.7 * rows + 0.2)
    row = 0
    for video in videos:
        sources = [("ground truth", video.truth), *video.predicted.items()]
        for title, masks in sources:
            for col, (frame, mask) in enumerate(zip(video.frames, masks, strict=True), start=1):
                ax = fig.add_subplot(rows, columns, row * columns + col)
                ax.imshow(overlay(frame, mask), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if col == 1:
                    ax.set_ylabel(f"{video.name}\n{title}", fontsize=8)
                if title == "ground truth":
                    ax.set_title(f"frame {video.frame_ids[col - 1]}", fontsize=8)
            row += 1
    fig.tight_layout()
    return save_png(fig, path)
