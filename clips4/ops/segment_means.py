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
- :func:`grid_segment_rows`: :func:`grid_segment_means` of many images, as rows of one flat table of their
  superpixels (the segments cache's rows).
"""

from __future__ import annotations

from typing import Any

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


def grid_segment_rows(
    labels: Any,
    extents: Any,
    dense_features: Any,
    dense_rows: np.ndarray,
    stride: int,
    offsets: np.ndarray,
    start: int,
    stop: int,
) -> dict[str, np.ndarray]:
    """Rows ``[start, stop)`` of the flat table of the superpixels of images ``0..N-1``, image after image: image
    i's superpixel k is row ``offsets[i] + k`` (``offsets`` int ``[N + 1]``, from 0).

    ``labels`` ``[N, H, W]`` are superpixel ids padded at the bottom and right, ``extents`` ``[N, 2]`` the (height,
    width) of each image in them, ``dense_features`` ``[M, h, w, D]`` feature grids at ``stride`` and image i's grid
    is row ``dense_rows[i]`` of them. They may be any arrays that slice like numpy's (zarr's): only the images with
    a superpixel in the range are read, the grids in one slice when their rows are consecutive.

    ``embeddings`` float16 ``[stop - start, D]`` (:func:`grid_segment_means`), ``image_index`` int32 (the image of
    each row) and ``area`` int32 (its pixels).
    """
    first = int(np.searchsorted(offsets, start, side="right")) - 1
    last = int(np.searchsorted(offsets, stop - 1, side="right")) - 1
    image_labels = labels[first : last + 1]
    image_extents = extents[first : last + 1]
    wanted = dense_rows[first : last + 1]
    if np.array_equal(wanted, np.arange(wanted[0], wanted[0] + len(wanted))):
        cell_features = dense_features[int(wanted[0]) : int(wanted[-1]) + 1]
    else:
        cell_features = np.stack([dense_features[int(row)] for row in wanted])
    embeddings = np.zeros((stop - start, cell_features.shape[-1]), np.float16)
    image_index = np.zeros(stop - start, np.int32)
    area = np.zeros(stop - start, np.int32)
    for k, image in enumerate(range(first, last + 1)):
        height, width = (int(v) for v in image_extents[k])
        count = int(offsets[image + 1]) - int(offsets[image])
        vectors, pixels = grid_segment_means(image_labels[k, :height, :width], cell_features[k], stride, count)
        lo, hi = max(int(offsets[image]), start), min(int(offsets[image + 1]), stop)
        source = slice(lo - int(offsets[image]), hi - int(offsets[image]))
        embeddings[lo - start : hi - start] = vectors[source]
        area[lo - start : hi - start] = pixels[source]
        image_index[lo - start : hi - start] = image
    return {"embeddings": embeddings, "image_index": image_index, "area": area}


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
