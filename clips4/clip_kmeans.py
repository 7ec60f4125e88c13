"""The paper's source of the CLIP segment embeddings behind the prototypes: per-image clusters of CLIP's own dense
pixel embeddings ("segments" as CLIP-S4's section 3 words it), an alternative to the OWT-UCM superpixels that
segments.zarr holds (``prototypes.source: clip_kmeans``).

Each image's dense features ``[h, w, D]`` (clip_dense.zarr) are clustered by spherical k-means
(:func:`clips4.ops.kmeans.spherical_kmeans`, k-means++ seeds from one generator seeded with ``seed``, so the
result is a pure function of the store and the params) into ``clusters`` groups; a segment's embedding is the
normalised mean of CLIP's features over its cluster, as for a superpixel. Clusters ignore pixel position, so a
segment may be split in space; empty clusters are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clips4.ops.kmeans import spherical_kmeans

KMEANS_ITERATIONS = 10  # as the student's segments (clips4.train.losses.ClipS4Criterion)


@dataclass(frozen=True)
class ClusterSegments:
    """``embeddings`` float16 unit rows ``[S, D]``, ``image_rows`` int64 ``[S]``: the store row each came from."""

    embeddings: np.ndarray
    image_rows: np.ndarray


def cluster_image(features: np.ndarray, clusters: int, generator: torch.Generator) -> np.ndarray:
    """float32 unit ``[n, D]``: the normalised mean features of the (non-empty) k-means clusters of one image's
    features ``[h, w, D]``, in cluster order."""
    return image_clusters(features, clusters, generator)[0]


def image_clusters(features: np.ndarray, clusters: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cluster_image`'s segments ``[n, D]`` and each feature's segment ``[h, w]`` (int64, into those ``n``
    rows), for what reads a segment back onto the image (benchmarks/prototype_purity.py)."""
    points = F.normalize(
        torch.from_numpy(np.asarray(features, dtype=np.float32)).reshape(-1, features.shape[-1]), dim=1
    )
    labels = spherical_kmeans(points, clusters, KMEANS_ITERATIONS, generator)
    sums = points.new_zeros(int(labels.max()) + 1, points.shape[1]).index_add_(0, labels, points)
    kept = sums.norm(dim=1) > 0
    compact = torch.cumsum(kept.long(), 0) - 1  # cluster id -> row among the non-empty ones
    return F.normalize(sums[kept], dim=1).numpy(), compact[labels].reshape(features.shape[:-1]).numpy()


def clip_kmeans_segments(dense: object, rows: tuple[int, int], clusters: int, seed: int) -> ClusterSegments:
    """The cluster segments of every image of ``rows`` (``[first, stop)`` of a clip_dense store, read chunk by chunk
    with ``iter_rows``)."""
    generator = torch.Generator().manual_seed(seed)
    embeddings, image_rows = [], []
    for row, features in dense.iter_rows(*rows):  # type: ignore[attr-defined]
        found = cluster_image(features, clusters, generator)
        embeddings.append(found.astype(np.float16))
        image_rows.append(np.full(len(found), row, np.int64))
    if not embeddings:
        return ClusterSegments(np.zeros((0, 0), np.float16), np.zeros(0, np.int64))
    return ClusterSegments(np.concatenate(embeddings), np.concatenate(image_rows))
