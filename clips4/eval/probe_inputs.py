"""What the unsupervised probes (kNN over segments, linear classifier) read per image, and the grid mapping.

The probes take any dense feature: MaskCLIP's or the student's pixel embeddings, on a feature grid ``[D, h, w]``
that is coarser than the label map ``[H, W]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from clips4.errors import Clips4Error


class DenseItem(NamedTuple):
    """One image: pixel embeddings ``[D, h, w]``, labels uint8 ``[H, W]`` (255 ignored), superpixels ``[H, W]``."""

    embeddings: torch.Tensor
    label: np.ndarray
    superpixels: np.ndarray | None = None


def nearest_cells(grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` flat index of the grid cell under each pixel (``F.interpolate``'s ``nearest`` rule)."""
    (h, w), (height, width) = grid, size
    rows = np.minimum(h - 1, (np.arange(height) * h) // height)
    cols = np.minimum(w - 1, (np.arange(width) * w) // width)
    return rows[:, None] * w + cols[None, :]


def check_item(item: DenseItem, index: int, *, needs_superpixels: bool = False) -> None:
    """Refuse an image whose arrays do not fit together (with its position in the list, to find it)."""
    if item.embeddings.ndim != 3 or item.label.ndim != 2:
        raise Clips4Error(
            f"probe input {index}: embeddings {tuple(item.embeddings.shape)} must be [D, h, w] and labels "
            f"{item.label.shape} [H, W]"
        )
    if needs_superpixels and (item.superpixels is None or item.superpixels.shape != item.label.shape):
        shape = None if item.superpixels is None else item.superpixels.shape
        raise Clips4Error(
            f"probe input {index}: superpixels {shape} must be given at the label size {item.label.shape}"
        )
