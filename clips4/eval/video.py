"""Video mask propagation of one method over a DAVIS-layout video set (CLIP-S4's Table 5), written and scored.

Each frame's pixel embeddings (the method's own, as for segmentation) are resampled to a common grid of
``frame size / stride`` cells (CRW's stride 8), so that the propagation's spatial radius means the same for every
method whatever its native output stride: area-averaged where the method's grid is finer, bilinear where it is
coarser. The first frame's mask is propagated (:func:`clips4.eval.propagation.propagate_masks`), every frame is
written as ``<out>/<sequence>/<frame>.png`` (the official DAVIS results layout, one atomic write per file), and
the written files are read back and scored by :func:`clips4.eval.davis.evaluate_results`, so the numbers reported
are those of the files any evaluator will read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from clips4.data.davis import DavisDataset
from clips4.eval.davis import DavisSummary, evaluate_results, write_results
from clips4.eval.propagation import PropagationConfig, propagate_masks
from clips4.eval.scoring import PixelSegmenter


def propagation_grid(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Cells ``(ceil(H / stride), ceil(W / stride))`` of the grid the embeddings are propagated on."""
    return -(-size[0] // stride), -(-size[1] // stride)


def resample_embeddings(embeddings: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Unit ``[T, D, gh, gw]`` from ``[T, D, h, w]``: area-averaged down to a coarser grid, bilinear otherwise."""
    if tuple(embeddings.shape[-2:]) == tuple(grid):
        return F.normalize(embeddings.float(), dim=1)
    shrinks = embeddings.shape[-2] >= grid[0] and embeddings.shape[-1] >= grid[1]
    mode = "area" if shrinks else "bilinear"
    extra = {} if shrinks else {"align_corners": False}
    return F.normalize(F.interpolate(embeddings.float(), size=grid, mode=mode, **extra), dim=1)


@torch.no_grad()
def video_embeddings(embedder: PixelSegmenter, frames: list[np.ndarray], stride: int, batch_size: int = 16):
    """``[T, D, gh, gw]`` unit embeddings of a video's frames on the propagation grid."""
    grid = propagation_grid(frames[0].shape[:2], stride)
    parts = []
    for start in range(0, len(frames), batch_size):
        embeddings = embedder.pixel_embeddings(frames[start : start + batch_size]).permute(0, 3, 1, 2)
        parts.append(resample_embeddings(embeddings, grid))
    return torch.cat(parts)


def propagate_video_set(
    embedder: PixelSegmenter,
    videos: DavisDataset,
    out: str | Path,
    config: PropagationConfig,
    stride: int,
    desc: str = "propagate",
) -> DavisSummary:
    """Propagate every video's first mask, write ``out/<sequence>/<frame>.png``, and score the written files."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)  # no sequence of an earlier run may be scored or read as this one's
    for video in tqdm(videos, desc=desc, unit="video", mininterval=1.0, total=len(videos)):
        embeddings = video_embeddings(embedder, list(video.frames), stride)
        masks = propagate_masks(embeddings, video.masks[0], config)
        write_results(out, video.name, video.frame_ids, masks)
    return evaluate_results(videos.root, out, videos.sequences, videos.resolution)
