"""Reading an image in sliding windows, the overlaps averaged: the one reader for CLIP's dense features and the
student's pixel embeddings (mmsegmentation's ``slide`` test mode).

The reader is given ``forward(crop) -> [B, h, w, D]``, the features of a crop on a grid of ``step`` pixels per
cell (CLIP: its patch size; the student: 1, after upsampling its output to the crop's pixels). Windows start every
``stride`` pixels, the last one flush with the border (:func:`window_starts`); each cell's features are summed over
the windows that cover it, divided by their count and re-normalised.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one side: every ``stride`` pixels, the last window flush with the end."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return [*starts, size - window]


def sliding_window_mean(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    window: int,
    stride: int,
    step: int = 1,
) -> torch.Tensor:
    """Unit features ``[B, H / step, W / step, D]`` of ``images [B, 3, H, W]`` read in square windows.

    ``H``, ``W``, ``window`` and ``stride`` must be multiples of ``step`` (the caller pads), so that every window
    starts on the grid.
    """
    height, width = images.shape[-2:]
    grid_h, grid_w = height // step, width // step
    total = None
    counts = torch.zeros(grid_h, grid_w, 1, dtype=images.dtype, device=images.device)
    for top in window_starts(height, window, stride):
        for left in window_starts(width, window, stride):
            features = forward(images[..., top : top + window, left : left + window])
            if total is None:
                total = features.new_zeros((images.shape[0], grid_h, grid_w, features.shape[-1]))
            gy, gx = top // step, left // step
            total[:, gy : gy + features.shape[1], gx : gx + features.shape[2]] += features
            counts[gy : gy + features.shape[1], gx : gx + features.shape[2]] += 1
    return F.normalize(total / counts, dim=-1)
