"""The propagation figure's inputs: reports/davis/<method>/<sequence>/<frame>.png (written by ``evaluate``, the
official DAVIS results layout) and the videos' frames and ground truth (DAVIS 2017 layout, data/synth_video by
default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clips4.data.davis import open_davis
from clips4.data.images import read_label, read_rgb
from clips4.errors import Clips4Error
from clips4.eval.davis import read_annotations
from clips4.report.figures_video import VideoPanel, plot_propagation
from clips4.report.markdown import FigureEntry
from clips4.report.tables import method_order, method_title

#: Videos and frames shown.
VIDEO_SEQUENCES = 2
VIDEO_FRAMES = 4
TITLE = "Propagated masks on video frames (paper Table 5's task)"


def result_methods(davis_dir: Path) -> list[str]:
    """Methods with a results folder under ``davis_dir``, in report order."""
    if not davis_dir.is_dir():
        return []
    present = [p.name for p in davis_dir.iterdir() if p.is_dir() and any(p.iterdir())]
    return [m for m in method_order(present) if m in present]


def pick_frames(frame_ids: list[str], available: set[str], count: int = VIDEO_FRAMES) -> list[str]:
    """``count`` frames spread evenly over those with results from every method (first to last)."""
    candidates = [f for f in frame_ids if f in available]
    if len(candidates) <= count:
        return candidates
    picks = np.unique(np.linspace(0, len(candidates) - 1, count).round().astype(int))
    return [candidates[i] for i in picks]


def draw_video_figure(davis_dir: Path, video_root: Path, path: Path, link: str) -> FigureEntry:
    """The propagation figure, or an entry saying why it is not drawn."""
    methods = result_methods(davis_dir)
    if not methods:
        return FigureEntry(TITLE, "", missing=f"not run: no propagated masks under {davis_dir}/<method>/")
    sequences = sorted(set.intersection(*({p.name for p in (davis_dir / m).iterdir() if p.is_dir()} for m in methods)))
    if not sequences:
        return FigureEntry(TITLE, "", missing=f"no sequence has results from every method under {davis_dir}")
    try:
        videos = open_davis(video_root, "val")
    except Clips4Error as err:
        return FigureEntry(TITLE, "", missing=f"the videos' ground truth cannot be read ({err})")
    panels = []
    for sequence in sequences[:VIDEO_SEQUENCES]:
        frame_ids, truth = read_annotations(videos.root, sequence, videos.resolution)
        available = set.intersection(*({p.stem for p in (davis_dir / m / sequence).glob("*.png")} for m in methods))
        frames = {p.stem: p for p in videos.frame_files(sequence)}
        chosen = pick_frames(frame_ids, available & set(frames))
        if not chosen:
            continue
        panels.append(
            VideoPanel(
                name=sequence,
                frame_ids=chosen,
                frames=[read_rgb(frames[f]) for f in chosen],
                truth=[truth[frame_ids.index(f)] for f in chosen],
                predicted={
                    method_title(m): [read_label(davis_dir / m / sequence / f"{f}.png") for f in chosen]
                    for m in methods
                },
            )
        )
    if not panels:
        return FigureEntry(TITLE, "", missing=f"no result frame under {davis_dir} matches an annotated frame")
    plot_propagation(panels, path)
    shown = ", ".join(method_title(m) for m in methods)
    return FigureEntry(
        TITLE,
        f"First-frame object masks propagated by pixel-embedding affinities ({shown}; the masks `evaluate` wrote "
        f"to reports/davis), on {VIDEO_FRAMES} frames of the first {len(panels)} videos, beside the ground truth.",
        link,
    )
