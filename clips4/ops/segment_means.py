"""The normalised mean of embeddings over segments: one home for a concept that training (a view's segments,
L_e's CLIP side), evaluation (avgsim, the kNN probe's segments), the segments cache and the report all use.

- :func:`segment_means`: torch, ``values [N, D]`` summed per segment id with ``index_add_`` (autograd and GPU, for
  the losses), optionally weighted, then normalised.
- :func:`superpixel_means`: :func:`segment_means` of a ``[D, H, W]`` map over ``[H, W]`` superpixels.
- :func:`upsampled_superpixel_means`: a method's pixel embeddings on its own grid ``[h, w, D]`` upsampled
  bilinearly to the superpixels' size first (avgsim and the report's segment figures).
- :func:`superpixel_cosines`: avgsim's terms, the student's superpixel means against CLIP's.
- :func:`grid_segment_means`: the CLIP side read from a feature grid (numpy): every pixel takes the feature of the
  ``stride`` x ``stride`` cell it lies in, so a superpixel's mean is the cell features weighted by how many of its
  pixels fall in each cell. That weighting is one bincount over (superpixel, cell) pairs and one matrix product. It
  stays numpy (float32 ``weights @ cells``) rather than :func:`segment_means`: torch's ``index_add_`` sums in another
  order, which changes the last bits of segments.zarr's float16 rows and every stage after it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def grid_segment_means(
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


def segment_means(
    values: torch.Tensor,
    segment_ids: torch.Tensor,
    count: int,
    *,
    weights: torch.Tensor | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Mean of ``values [N, D]`` over each segment ``segment_ids [N]`` (``0..count-1``): ``[count, D]``, unit length
    if ``normalize`` (an empty segment gives a zero row). ``weights [N]`` counts each row that many times."""
    rows = values if weights is None else values * weights[:, None]
    sums = values.new_zeros(count, values.shape[1]).index_add_(0, segment_ids, rows)
    if normalize:
        return F.normalize(sums, dim=1)
    sizes = torch.bincount(segment_ids, minlength=count).clamp(min=1).to(values.dtype)
    return sums / sizes[:, None]


def superpixel_means(pixels: torch.Tensor, superpixels: torch.Tensor, count: int) -> torch.Tensor:
    """Unit means ``[count, D]`` of pixel embeddings ``[D, H, W]`` over superpixels ``[H, W]`` (ids 0..count-1)."""
    return segment_means(pixels.flatten(1).T, superpixels.flatten(), count)


def upsampled_pixels(embeddings: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Unit pixel embeddings ``[D, H, W]`` (CPU, float32) of a grid ``[h, w, D]`` upsampled bilinearly to ``size``."""
    per_pixel = F.interpolate(embeddings.permute(2, 0, 1)[None].float(), size=size, mode="bilinear")
    return F.normalize(per_pixel, dim=1)[0].cpu()


def upsampled_superpixel_means(embeddings: torch.Tensor, superpixels: np.ndarray, count: int) -> torch.Tensor:
    """``[count, D]`` unit means over ``[H, W]`` superpixels of a method's pixel embeddings ``[h, w, D]``."""
    pixels = upsampled_pixels(embeddings, superpixels.shape)
    return superpixel_means(pixels, torch.from_numpy(superpixels.astype(np.int64)), count)


def superpixel_cosines(
    embeddings: torch.Tensor, superpixels: np.ndarray, clip_dense: np.ndarray, feature_stride: int
) -> torch.Tensor:
    """avgsim's terms for one image: the cosine ``[n]`` of a method's and CLIP's embedding of each non-empty
    superpixel. ``embeddings`` are the method's ``[h, w, D]``, ``superpixels`` ``[H, W]`` ids and ``clip_dense``
    the cached ``[h', w', D]`` CLIP features at ``feature_stride``."""
    teacher, area = grid_segment_means(superpixels, clip_dense, feature_stride)
    student = upsampled_superpixel_means(embeddings, superpixels, len(area))
    return (student * torch.from_numpy(teacher)).sum(dim=1)[torch.from_numpy(area > 0)]
