"""CLIP embeddings of superpixels: the mean of the dense features inside each one, normalised.

Dense features live on a grid of ``stride`` x ``stride`` pixel cells; every pixel takes the feature of the cell
it lies in, so a superpixel's mean is the cell features weighted by how many of its pixels fall in each cell.
That weighting is one bincount over (superpixel, cell) pairs and one small matrix product, whatever the sizes.
"""

from __future__ import annotations

import numpy as np


def segment_embeddings(
    superpixels: np.ndarray, dense_features: np.ndarray, stride: int, num_regions: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings ``[n, D]`` (float32) and pixel areas ``[n]`` of superpixels ``0..n-1``.

    ``superpixels`` is int ``[H, W]`` (ids ``0..n-1``); ``dense_features`` is ``[h, w, D]`` with
    ``h >= ceil(H / stride)`` and ``w >= ceil(W / stride)`` (padding beyond is ignored). A superpixel with
    no pixel gets a zero vector and area 0.
    """
    height, width = superpixels.shape
    grid_h, grid_w = -(-height // stride), -(-width // stride)
    if dense_features.shape[0] < grid_h or dense_features.shape[1] < grid_w:
        raise ValueError(
            f"dense features {dense_features.shape[:2]} do not cover a {height}x{width} image at stride {stride}"
        )
    n = int(superpixels.max()) + 1 if num_regions is None else int(num_regions)
    cells = (np.arange(height)[:, None] // stride) * grid_w + (np.arange(width)[None, :] // stride)
    pairs = superpixels.astype(np.int64).ravel() * (grid_h * grid_w) + cells.ravel()
    weights = np.bincount(pairs, minlength=n * grid_h * grid_w).reshape(n, grid_h * grid_w).astype(np.float32)
    area = weights.sum(axis=1)
    cell_features = np.asarray(dense_features[:grid_h, :grid_w], np.float32).reshape(grid_h * grid_w, -1)
    sums = weights @ cell_features
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    embeddings = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
    return embeddings, area.astype(np.int64)
