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
    crops_per_forward: int | None = None,
) -> torch.Tensor:
    """Unit features ``[B, H / step, W / step, D]`` of ``images [B, 3, H, W]`` read in square windows.

    ``H``, ``W``, ``window`` and ``stride`` must be multiples of ``step`` (the caller pads), so that every window
    starts on the grid. The windows of all images go through ``forward`` together, ``crops_per_forward`` crops at a
    time (they all have the same size; default: all ``B x windows`` in one batch, bounded by the caller's batch of
    images): on a GPU a few large batches, not one small one per window. A forward whose output is large per crop
    (the student's, upsampled to pixels) passes ``B``: one window of every image at a time.
    """
    height, width = images.shape[-2:]
    grid_h, grid_w = height // step, width // step
    starts = [
        (top, left) for top in window_starts(height, window, stride) for left in window_starts(width, window, stride)
    ]
    crops = torch.cat([images[..., top : top + window, left : left + window] for top, left in starts])
    chunk = len(crops) if crops_per_forward is None else max(1, crops_per_forward)
    outputs = torch.cat([forward(part) for part in crops.split(chunk)])
    # float32 sums at least: bf16 features (autocast) are averaged without bf16 rounding of the running total
    dtype = torch.promote_types(outputs.dtype, torch.float32)
    total = torch.zeros((images.shape[0], grid_h, grid_w, outputs.shape[-1]), dtype=dtype, device=outputs.device)
    counts = torch.zeros(grid_h, grid_w, 1, dtype=dtype, device=outputs.device)
    for (top, left), cell in zip(starts, outputs.split(images.shape[0]), strict=True):  # window-major, as stacked
        gy, gx = top // step, left // step
        total[:, gy : gy + cell.shape[1], gx : gx + cell.shape[2]] += cell
        counts[gy : gy + cell.shape[1], gx : gx + cell.shape[2]] += 1
    return F.normalize(total / counts, dim=-1)
