"""kNN segment classification (CLIP-S4's Table 4, left): unsupervised segments labelled by their nearest neighbours.

Segments are made the same way on train and val images: the pixel embeddings of one image are clustered with
spherical k-means (:func:`clips4.train.kmeans.spherical_kmeans`, the training's) and each cluster is split along
the superpixels (one segment per cluster x superpixel pair); a segment's embedding is the unit-normalised mean of
its pixels' embeddings (each pixel reads the feature-grid cell under it). Train segments take the majority
ground-truth label of their pixels (255 ignored) - the only use of train ground truth, as in the paper. Each val
segment takes the majority label of its ``k`` nearest train segments by cosine (FAISS ``IndexFlatIP`` on unit
vectors); a tie goes to the tied class whose nearest member ranks first. The painted val label maps are scored
with :mod:`clips4.eval.metrics` over the whole set.
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
from clips4.eval.metrics import confusion_matrix, mean_iou, per_class_iou
from clips4.eval.probe_inputs import DenseItem, check_item, nearest_cells
from clips4.train.kmeans import spherical_kmeans

KMEANS_ITERATIONS = 20


def form_segments(embeddings: torch.Tensor, superpixels: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """Segment ids ``[H, W]`` (0..S-1): k-means of the ``[D, h, w]`` embeddings, split by ``[H, W]`` superpixels."""
    dim, h, w = embeddings.shape
    points = F.normalize(embeddings.float().reshape(dim, -1).T, dim=1)
    # The training's spherical k-means (k-means++ seeds from a seeded generator): deterministic for a seed.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    cluster_of_cell = spherical_kmeans(points, clusters, KMEANS_ITERATIONS, generator).cpu().numpy()
    cluster = cluster_of_cell[nearest_cells((h, w), superpixels.shape)]
    superpixel_ids = np.unique(superpixels, return_inverse=True)[1].reshape(superpixels.shape)
    pair = cluster.astype(np.int64) * (int(superpixel_ids.max()) + 1) + superpixel_ids
    return np.unique(pair, return_inverse=True)[1].reshape(pair.shape)


def segment_embeddings(embeddings: torch.Tensor, segments: np.ndarray) -> torch.Tensor:
    """Unit ``[S, D]`` mean embedding of each segment of ``segments`` ``[H, W]`` (ids 0..S-1), on the grid's device."""
    dim, h, w = embeddings.shape
    cells = nearest_cells((h, w), segments.shape)
    # Each (segment, cell) pair contributes the cell's embedding once per pixel it covers.
    pairs, counts = np.unique(segments.astype(np.int64) * (h * w) + cells, return_counts=True)
    segment_index = torch.from_numpy(pairs // (h * w)).to(embeddings.device)
    cell_index = torch.from_numpy(pairs % (h * w)).to(embeddings.device)
    weights = torch.from_numpy(counts).to(embeddings.device, torch.float32)
    flat = embeddings.float().reshape(dim, -1).T
    sums = torch.zeros(int(segments.max()) + 1, dim, device=embeddings.device)
    sums.index_add_(0, segment_index, flat[cell_index] * weights[:, None])
    return F.normalize(sums, dim=1)


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
    bank, bank_labels = [], []
    for index, item in enumerate(train):
        check_item(item, index, needs_superpixels=True)
        segments = form_segments(item.embeddings, item.superpixels, clusters, seed)
        labels = majority_labels(segments, item.label, num_classes)
        keep = labels != IGNORE_INDEX
        bank.append(segment_embeddings(item.embeddings, segments).cpu().numpy()[keep])
        bank_labels.append(labels[keep])
    bank_array = np.concatenate(bank) if bank else np.zeros((0, 1), np.float32)
    bank_label_array = np.concatenate(bank_labels) if bank_labels else np.zeros(0, np.int64)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    val_segments = 0
    for index, item in enumerate(val):
        check_item(item, index, needs_superpixels=True)
        segments = form_segments(item.embeddings, item.superpixels, clusters, seed)
        queries = segment_embeddings(item.embeddings, segments).cpu().numpy()
        predicted = knn_vote(bank_array, bank_label_array, queries, k)[segments]
        confusion += confusion_matrix(item.label, predicted, num_classes)
        val_segments += len(queries)
    return KnnResult(
        miou=mean_iou(confusion),
        per_class_iou=per_class_iou(confusion),
        confusion=confusion,
        train_segments=len(bank_array),
        val_segments=val_segments,
    )
