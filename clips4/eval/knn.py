"""kNN segment classification (CLIP-S4's Table 4, left): unsupervised segments labelled by their nearest neighbours.

Segments are made the same way on train and val images: the pixel embeddings of one image are clustered with
spherical k-means (:func:`clips4.ops.kmeans.spherical_kmeans`, the training's) and each cluster is split along
the superpixels (one segment per cluster x superpixel pair); a segment's embedding is the unit-normalised mean of
its pixels' embeddings (each pixel reads the feature-grid cell under it). Train segments take the majority
ground-truth label of their pixels (255 ignored) - the only use of train ground truth, as in the paper. Each val
segment takes the majority label of its ``k`` nearest train segments by cosine (FAISS ``IndexFlatIP`` on unit
vectors); a tie goes to the tied class whose nearest member ranks first. The painted val label maps are scored
with :mod:`clips4.ops.metrics` over the whole set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from clips4.data.types import IGNORE_INDEX
from clips4.errors import Clips4Error
from clips4.eval.probe_inputs import DenseItem, check_item, nearest_cells
from clips4.ops.kmeans import spherical_kmeans
from clips4.ops.metrics import confusion_matrix, mean_iou, per_class_iou
from clips4.ops.segment_means import segment_means

KMEANS_ITERATIONS = 20


def split_clusters(cluster_of_cell: np.ndarray, grid: tuple[int, int], superpixels: np.ndarray) -> np.ndarray:
    """Segment ids ``[H, W]`` (0..S-1): the grid cells' clusters ``[h*w]`` read under each pixel, split by the
    ``[H, W]`` superpixels (one segment per cluster x superpixel pair present)."""
    cluster = cluster_of_cell[nearest_cells(grid, superpixels.shape)]
    superpixel_ids = np.unique(superpixels, return_inverse=True)[1].reshape(superpixels.shape)
    pair = cluster.astype(np.int64) * (int(superpixel_ids.max()) + 1) + superpixel_ids
    return np.unique(pair, return_inverse=True)[1].reshape(pair.shape)


def _cluster(embeddings: torch.Tensor, clusters: int, generator: torch.Generator) -> np.ndarray:
    """Cluster ids ``[B, h*w]`` of ``[B, D, h, w]`` embeddings, each image clustered on its own."""
    points = F.normalize(embeddings.float().flatten(2).transpose(1, 2), dim=-1)
    # The training's spherical k-means (k-means++ seeds from a seeded generator): deterministic for a seed.
    return spherical_kmeans(points, clusters, KMEANS_ITERATIONS, generator).cpu().numpy()


def form_segments(embeddings: torch.Tensor, superpixels: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """Segment ids ``[H, W]`` (0..S-1): k-means of the ``[D, h, w]`` embeddings, split by ``[H, W]`` superpixels."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return split_clusters(_cluster(embeddings[None], clusters, generator)[0], embeddings.shape[1:], superpixels)


def segments_of(items: list[DenseItem], clusters: int, seed: int = 0, batch_size: int = 64) -> list[np.ndarray]:
    """:func:`form_segments` of every item, the k-means batched over consecutive images of one grid size (one
    batched k-means costs about what one image's does: the images are small)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    segments: list[np.ndarray] = []
    start = 0
    while start < len(items):
        shape = items[start].embeddings.shape
        stop = start + 1
        while stop < len(items) and stop - start < batch_size and items[stop].embeddings.shape == shape:
            stop += 1
        batch = torch.stack([item.embeddings for item in items[start:stop]])
        for item, cluster_of_cell in zip(items[start:stop], _cluster(batch, clusters, generator), strict=True):
            segments.append(split_clusters(cluster_of_cell, tuple(shape[1:]), item.superpixels))
        start = stop
    return segments


def probe_segment_means(embeddings: torch.Tensor, segments: np.ndarray) -> torch.Tensor:
    """Unit ``[S, D]`` mean embedding of each segment of ``segments`` ``[H, W]`` (ids 0..S-1), on the grid's device:
    each pixel reads the ``[D, h, w]`` grid cell under it, so each (segment, cell) pair counts once per pixel."""
    dim, h, w = embeddings.shape
    cells = nearest_cells((h, w), segments.shape)
    pairs, counts = np.unique(segments.astype(np.int64) * (h * w) + cells, return_counts=True)
    segment_index = torch.from_numpy(pairs // (h * w)).to(embeddings.device)
    cell_index = torch.from_numpy(pairs % (h * w)).to(embeddings.device)
    weights = torch.from_numpy(counts).to(embeddings.device, torch.float32)
    flat = embeddings.float().reshape(dim, -1).T
    return segment_means(flat[cell_index], segment_index, int(segments.max()) + 1, weights=weights)


def majority_labels(segments: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Most frequent class ``[S]`` of each segment's labelled pixels (ties: smaller id); 255 when none is labelled."""
    valid = label != IGNORE_INDEX
    count = int(segments.max()) + 1
    votes = np.bincount(
        segments[valid].astype(np.int64) * num_classes + label[valid], minlength=count * num_classes
    ).reshape(count, num_classes)
    return np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), IGNORE_INDEX)


def knn_vote(train: np.ndarray, train_labels: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Majority class ``[M]`` of the ``k`` nearest rows of ``train`` ``[N, D]`` for each unit query ``[M, D]``."""
    if len(train) == 0:
        raise Clips4Error("kNN probe: no labelled train segment; check that the train labels are not all 255")
    k = min(k, len(train))
    index = faiss.IndexFlatIP(train.shape[1])
    index.add(np.ascontiguousarray(train, dtype=np.float32))
    _, neighbours = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    labels = train_labels[neighbours]  # [M, k], nearest first
    num_classes = int(train_labels.max()) + 1
    rows = np.repeat(np.arange(len(queries)), k)
    votes = np.zeros((len(queries), num_classes), np.int64)
    np.add.at(votes, (rows, labels.ravel()), 1)
    first_rank = np.full((len(queries), num_classes), k, np.int64)
    np.minimum.at(first_rank, (rows, labels.ravel()), np.tile(np.arange(k), len(queries)))
    # More votes wins; among equal votes, the class met first in the ranking (k - rank < k + 1 breaks only ties).
    return np.argmax(votes * (k + 1) + (k - first_rank), axis=1)


@dataclass(frozen=True)
class KnnResult:
    """Set-level kNN segmentation scores (percent) with the confusion matrix they come from."""

    miou: float
    per_class_iou: np.ndarray
    confusion: np.ndarray
    train_segments: int
    val_segments: int


def evaluate_knn(
    train: Iterable[DenseItem],
    val: Iterable[DenseItem],
    num_classes: int,
    *,
    k: int = 10,
    clusters: int = 8,
    seed: int = 0,
) -> KnnResult:
    """Label val segments by their ``k`` nearest train segments and score the painted pixels over the val set."""
    train, val = list(train), list(val)
    for items in (train, val):
        for index, item in enumerate(items):
            check_item(item, index, needs_superpixels=True)
    bank, bank_labels = [], []
    for item, segments in zip(train, segments_of(train, clusters, seed), strict=True):
        labels = majority_labels(segments, item.label, num_classes)
        keep = labels != IGNORE_INDEX
        bank.append(probe_segment_means(item.embeddings, segments).cpu().numpy()[keep])
        bank_labels.append(labels[keep])
    bank_array = np.concatenate(bank) if bank else np.zeros((0, 1), np.float32)
    bank_label_array = np.concatenate(bank_labels) if bank_labels else np.zeros(0, np.int64)
    val_segments = segments_of(val, clusters, seed)
    queries = [
        probe_segment_means(item.embeddings, segments).cpu().numpy()
        for item, segments in zip(val, val_segments, strict=True)
    ]
    # One search for all val segments: FAISS builds its index once.
    votes = knn_vote(bank_array, bank_label_array, np.concatenate(queries), k) if queries else np.zeros(0, np.int64)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    offset = 0
    for item, segments, rows in zip(val, val_segments, queries, strict=True):
        confusion += confusion_matrix(item.label, votes[offset : offset + len(rows)][segments], num_classes)
        offset += len(rows)
    return KnnResult(
        miou=mean_iou(confusion),
        per_class_iou=per_class_iou(confusion),
        confusion=confusion,
        train_segments=len(bank_array),
        val_segments=offset,
    )
