"""Every image metric of one method from one forward pass per image: language-driven segmentation, avgsim, and the
kNN and linear probes (Table 4) on the same pixel embeddings.

- Language-driven: each val pixel takes the nearest class text (the method's ``label``), one confusion matrix
  over the whole split (:mod:`clips4.eval.metrics`).
- avgsim (students only): the mean over the val superpixels of the cosine between the student's and CLIP's
  superpixel embeddings (:func:`clips4.train.validate.superpixel_cosines`, the training's validation rule; CLIP's
  side read from clip_dense.zarr).
- Probes: frozen embeddings of the first ``train_images`` train images (ground truth used only here) and of every
  val image; kNN over segments (:mod:`clips4.eval.knn`, with the cached superpixels) and the linear classifier
  (:mod:`clips4.eval.linear`). Embeddings are held in float16 between the pass and the probes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from clips4.data.types import Sample
from clips4.errors import Clips4Error
from clips4.eval.embedding_pass import PixelEmbedder, embedded_samples
from clips4.eval.knn import evaluate_knn
from clips4.eval.language import LanguageClasses
from clips4.eval.linear import LinearProbeConfig, evaluate_linear
from clips4.eval.metrics import confusion_matrix
from clips4.eval.probe_inputs import DenseItem
from clips4.train.validate import superpixel_cosines


@dataclass(frozen=True)
class KnnSettings:
    train_images: int
    k: int
    clusters: int
    seed: int


@dataclass(frozen=True)
class ProbeData:
    """What the probes and avgsim read besides the images: the cached superpixel ids of the first train images
    and of the val images (``[H, W]`` each, in split order), and CLIP's cached val features (for avgsim)."""

    train_superpixels: list[np.ndarray] | None = None
    val_superpixels: list[np.ndarray] | None = None
    val_clip_dense: list[np.ndarray] | None = None
    feature_stride: int = 1


@dataclass
class ImageScores:
    """One method's image metrics (``None``: not computed in this run) and seconds per part."""

    confusion: np.ndarray
    images: int
    avgsim: float | None = None
    knn_miou: float | None = None
    linear_miou: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _item(embedding: torch.Tensor, label: np.ndarray, superpixels: np.ndarray | None) -> DenseItem:
    return DenseItem(embedding.permute(2, 0, 1).to("cpu", torch.float16), label, superpixels)


def score_images(
    embedder: PixelEmbedder,
    train: Sequence[Sample],
    val: Sequence[Sample],
    classes: LanguageClasses,
    data: ProbeData,
    *,
    student: bool,
    knn: KnnSettings | None,
    linear: tuple[int, LinearProbeConfig] | None,
    where: str,
    desc: str,
) -> ImageScores:
    """Language-driven scores, avgsim (``student``), kNN (``knn``) and linear (``(train_images, config)``) probes."""
    num_classes = len(classes.names)
    keep_items = knn is not None or linear is not None
    confusion = np.zeros((num_classes, num_classes), np.int64)
    val_items: list[DenseItem] = []
    cosines: list[torch.Tensor] = []
    images = 0
    start = time.perf_counter()
    for index, sample, embedding in tqdm(
        embedded_samples(embedder, val, len(val)), desc=f"{desc} val", unit="img", mininterval=1.0, total=len(val)
    ):
        if sample.label is None:
            continue
        label = classes.map_labels(sample.label)
        size = label.shape
        confusion += confusion_matrix(label, embedder.label(embedding[None], size)[0], num_classes)
        images += 1
        if student:
            per_pixel = F.normalize(
                F.interpolate(embedding.permute(2, 0, 1)[None].float(), size=size, mode="bilinear"), dim=1
            )[0].cpu()
            cosines.append(
                superpixel_cosines(
                    per_pixel, data.val_superpixels[index], data.val_clip_dense[index], data.feature_stride
                )
            )
        if keep_items:
            val_items.append(_item(embedding, label, _at(data.val_superpixels, index)))
    if confusion.sum() == 0:
        raise Clips4Error(
            f"{where}: no labelled pixel to score ({images} labelled images of {len(val)}); "
            "point dataset.val_split at a split with ground-truth masks"
        )
    scores = ImageScores(confusion=confusion, images=images)
    if student:
        similarities = torch.cat(cosines)
        scores.avgsim = float(similarities.mean()) if len(similarities) else None
    scores.seconds["language"] = time.perf_counter() - start
    if not keep_items:
        return scores
    start = time.perf_counter()
    count = max(knn.train_images if knn else 0, linear[0] if linear else 0)
    train_items = [
        _item(embedding, classes.map_labels(sample.label), _at(data.train_superpixels, index))
        for index, sample, embedding in tqdm(
            embedded_samples(embedder, train, count), desc=f"{desc} train", unit="img", mininterval=1.0, total=count
        )
        if sample.label is not None
    ]
    scores.seconds["probe_inputs"] = time.perf_counter() - start
    if knn is not None:
        start = time.perf_counter()
        result = evaluate_knn(
            train_items[: knn.train_images], val_items, num_classes, k=knn.k, clusters=knn.clusters, seed=knn.seed
        )
        scores.knn_miou = result.miou
        scores.seconds["knn"] = time.perf_counter() - start
    if linear is not None:
        start = time.perf_counter()
        scores.linear_miou = evaluate_linear(train_items[: linear[0]], val_items, num_classes, linear[1]).miou
        scores.seconds["linear"] = time.perf_counter() - start
    return scores


def _at(values: list[np.ndarray] | None, index: int) -> np.ndarray | None:
    return None if values is None or index >= len(values) else values[index]
