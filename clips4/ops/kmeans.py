"""Segments of a view: spherical k-means on the pixel embeddings, split by superpixel (as in SegSort and HSG).

Clustering groups pixels whose embeddings agree; splitting each cluster by superpixel keeps every segment inside one
superpixel, so that a segment has one superpixel id, which both views share and which links a pixel to its positive
segments in either view.

The k-means runs in torch on the training device, batched over the images: at these sizes (hundreds to a few
thousand pixels, 36 clusters) it costs a few batched matrix products per iteration. faiss (the project's k-means
library for the large, offline ``prototypes`` stage) would need a CPU round trip per image here and seeds its own RNG.
Its initial centres are drawn from the ``generator`` passed in, so a resumed run reproduces the same segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Segments:
    """Segments of a batch of views.

    - ``ids`` long ``[B, h, w]``: segment of each pixel, ``0..count-1``, unique across the batch;
    - ``image`` long ``[count]``: the batch index of each segment;
    - ``superpixel`` long ``[count]``: the superpixel id each segment lies in.
    """

    ids: torch.Tensor
    image: torch.Tensor
    superpixel: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.image.numel())


def spherical_kmeans(
    x: torch.Tensor, k: int, iterations: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cluster unit vectors by cosine similarity: ``x [N, D]`` or ``[B, N, D]`` (each of the B sets on its own).

    Centres start by k-means++ seeding on the cosine distance, drawn from ``generator`` (evenly spaced points when
    None), then alternate assignment (nearest centre by dot product) and update (normalised mean); a cluster that
    empties keeps its centre. Returns the labels, long ``[N]`` or ``[B, N]``, in ``0..min(k, N)-1``.
    """
    batched = x.dim() == 3
    x = x if batched else x[None]
    sets, count, _ = x.shape
    k = min(k, count)
    if generator is None:
        picks = torch.linspace(0, count - 1, k).round().long().expand(sets, k).to(x.device)
        centres = torch.gather(x, 1, picks[..., None].expand(-1, -1, x.shape[-1]))
    else:
        centres = kmeans_plus_plus(x, k, generator)
    labels = assign(x, centres)
    for _ in range(iterations):
        sums = torch.zeros_like(centres).scatter_add_(1, labels[..., None].expand_as(x), x)
        filled = sums.norm(dim=-1, keepdim=True) > 0
        centres = torch.where(filled, F.normalize(sums, dim=-1), centres)
        new_labels = assign(x, centres)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return labels if batched else labels[0]


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeds (Arthur & Vassilvitskii, 2007) for ``x [B, N, D]`` on the cosine distance: ``[B, k, D]``.

    Each new centre is a point drawn with probability proportional to its distance to the nearest centre so far, so
    seeds spread over the clusters (uniform random starts often put two in one cluster and none in another). The
    draws are made on the CPU from ``generator`` so that a run gives the same seeds on any device.
    """
    sets, count, _ = x.shape
    rows = torch.arange(sets, device=x.device)
    first = torch.randint(0, count, (sets,), generator=generator).to(x.device)
    centres = x.new_empty(sets, k, x.shape[-1])
    centres[:, 0] = x[rows, first]
    distance = (1 - (x * centres[:, None, 0]).sum(-1)).clamp_(min=0)  # (bmm is slow for matrix-vector)
    for index in range(1, k):
        weights = distance.cpu()
        weights[weights.sum(dim=1) <= 0] = 1.0  # every point already a centre's duplicate: draw uniformly
        pick = torch.multinomial(weights, 1, generator=generator)[:, 0].to(x.device)
        centres[:, index] = x[rows, pick]
        torch.minimum(distance, (1 - (x * centres[:, None, index]).sum(-1)).clamp_(min=0), out=distance)
    return centres


def assign(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the most similar centre for each point: ``[B, N, D] x [B, k, D] -> [B, N]``."""
    return torch.bmm(x, centres.transpose(1, 2)).argmax(dim=-1)


def segments_within_superpixels(
    pixel_embeddings: torch.Tensor,
    superpixels: torch.Tensor,
    k: int,
    *,
    iterations: int = 10,
    generator: torch.Generator | None = None,
    location_weight: float = 0.0,
) -> Segments:
    """K-means clusters of each image's pixel embeddings ``[B, D, h, w]``, split by ``superpixels [B, h, w]``.

    ``k <= 0`` skips the clustering: each superpixel is one segment. The embeddings are detached (clustering picks
    the segments; gradients flow through the segment means the losses compute from them). ``location_weight > 0``
    appends the pixel's coordinates (in [-1, 1], times the weight) to its embedding before clustering, as SegSort's
    location features do, so that clusters are spatially compact and split into fewer, larger segments.
    """
    batch, _, height, width = pixel_embeddings.shape
    if tuple(superpixels.shape) != (batch, height, width):
        raise ValueError(
            f"superpixels {tuple(superpixels.shape)} do not match the embeddings' grid {batch, height, width}"
        )
    superpixels = superpixels.long()
    if k > 0:
        points = F.normalize(pixel_embeddings.detach().flatten(2).transpose(1, 2).float(), dim=-1)
        if location_weight > 0:
            ys, xs = torch.meshgrid(
                torch.linspace(-1, 1, height, device=points.device),
                torch.linspace(-1, 1, width, device=points.device),
                indexing="ij",
            )
            where = location_weight * torch.stack([ys, xs], dim=-1).view(1, -1, 2).expand(batch, -1, -1)
            points = F.normalize(torch.cat([points, where], dim=-1), dim=-1)
        clusters = spherical_kmeans(points, k, iterations, generator).view(batch, height, width)
    else:
        clusters = torch.zeros_like(superpixels)
    return split_by_superpixel(clusters, superpixels)


def split_by_superpixel(clusters: torch.Tensor, superpixels: torch.Tensor) -> Segments:
    """One segment per (image, superpixel, cluster) present: ``clusters`` and ``superpixels`` long ``[B, h, w]``."""
    batch = clusters.shape[0]
    clusters_n = int(clusters.max()) + 1
    superpixels_n = int(superpixels.max()) + 1
    image = torch.arange(batch, device=clusters.device).view(batch, 1, 1).expand_as(clusters)
    key = (image * superpixels_n + superpixels) * clusters_n + clusters
    unique, ids = torch.unique(key, return_inverse=True)  # sorted: segment ids follow (image, superpixel, cluster)
    per_image = superpixels_n * clusters_n
    return Segments(ids=ids, image=unique // per_image, superpixel=(unique % per_image) // clusters_n)
