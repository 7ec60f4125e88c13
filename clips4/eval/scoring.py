"""The one scorer: every image metric of one segmenter over a split, from one forward pass per image.

``evaluate`` (every method), the training's val score (models/clips4.json), the report, the experiments and the
benchmarks all call :func:`score_segmenter`, so a checkpoint gets one number whoever asks.

- Language-driven: each labelled pixel takes the class whose prompt-ensembled text embedding is nearest its
  embedding (the classes of :func:`clips4.inference.language.language_classes`: MaskCLIP's prompt names, VOC's
  background ignored), one confusion matrix over the whole split (:mod:`clips4.ops.metrics`, mmsegmentation's
  rules: areas summed over the set, 255 ignored, NaN only for an empty union, nanmean).
- avgsim (``avgsim=True``, students): the mean over the split's superpixels of the cosine between the method's and
  CLIP's superpixel embeddings (:func:`clips4.ops.segment_means.superpixel_cosines`; CLIP's side read from
  clip_dense.zarr, never recomputed).
- Probes (Table 4): frozen embeddings of the first ``train_images`` train images (ground truth used only here) and
  of every val image; kNN over segments (:mod:`clips4.eval.knn`, with the cached superpixels) and the linear
  classifier (:mod:`clips4.eval.linear`). Embeddings are held in float16 between the pass and the probes.

A segmenter is anything with :class:`clips4.inference.segmenter.Segmenter`'s ``pixel_embeddings(images)`` (unit
``[B, h, w, D]`` of same-size uint8 images) and ``class_embeddings(names)`` (``[C, D]``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from clips4.data.types import Sample
from clips4.errors import Clips4Error
from clips4.eval.knn import evaluate_knn
from clips4.eval.linear import LinearProbeConfig, evaluate_linear
from clips4.eval.probe_inputs import DenseItem
from clips4.inference.language import LanguageClasses, segment_with_text
from clips4.ops.batches import same_size_batches
from clips4.ops.metrics import confusion_matrix, mean_iou, per_class_iou, pixel_accuracy
from clips4.ops.segment_means import superpixel_cosines

#: Images per forward pass (consecutive images of one size).
BATCH_SIZE = 32


class PixelSegmenter(Protocol):
    def pixel_embeddings(self, images: Sequence[np.ndarray]) -> torch.Tensor: ...

    def class_embeddings(self, classes: Sequence[str]) -> torch.Tensor: ...


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


@dataclass(frozen=True)
class SegmentationScores:
    """mIoU and pixel accuracy (percent, 2 decimals) and per-class IoU (``None`` where a class has no union)."""

    miou: float
    pacc: float
    per_class: dict[str, float | None]
    images: int


@dataclass(frozen=True)
class SplitScores:
    """One segmenter's scores over a split (``None``: not computed in this run) and seconds per part."""

    confusion: np.ndarray
    images: int
    language: SegmentationScores
    avgsim: float | None = None
    segments: int = 0  # superpixels behind avgsim
    knn_miou: float | None = None
    linear_miou: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def scores_from_confusion(confusion: np.ndarray, names: Sequence[str], images: int) -> SegmentationScores:
    """The metrics of an accumulated confusion matrix whose rows and columns follow ``names``."""
    iou = per_class_iou(confusion)
    return SegmentationScores(
        miou=round(mean_iou(confusion), 2),
        pacc=round(pixel_accuracy(confusion), 2),
        per_class={
            name: (None if np.isnan(value) else round(float(value), 2)) for name, value in zip(names, iou, strict=True)
        },
        images=images,
    )


def embedded_samples(
    segmenter: PixelSegmenter, samples: Sequence[Sample], count: int, batch_size: int = BATCH_SIZE
) -> Iterator[tuple[int, Sample, torch.Tensor]]:
    """``(index, sample, embeddings [h, w, D])`` for the first ``count`` samples, in order; consecutive images of
    one size share a forward pass."""
    indexed = ((index, samples[index]) for index in range(min(count, len(samples))))
    for batch in same_size_batches(indexed, lambda item: item[1].image.shape, batch_size):
        embeddings = segmenter.pixel_embeddings([sample.image for _, sample in batch])
        for (index, sample), embedding in zip(batch, embeddings, strict=True):
            yield index, sample, embedding


def _item(embedding: torch.Tensor, label: np.ndarray, superpixels: np.ndarray | None) -> DenseItem:
    return DenseItem(embedding.permute(2, 0, 1).to("cpu", torch.float16), label, superpixels)


def _at(values: list[np.ndarray] | None, index: int) -> np.ndarray | None:
    return None if values is None or index >= len(values) else values[index]


def score_segmenter(
    segmenter: PixelSegmenter,
    val: Sequence[Sample],
    classes: LanguageClasses,
    *,
    where: str,
    desc: str = "evaluate",
    split_name: str = "val",
    max_images: int | None = None,
    data: ProbeData | None = None,
    avgsim: bool = False,
    train: Sequence[Sample] = (),
    knn: KnnSettings | None = None,
    linear: tuple[int, LinearProbeConfig] | None = None,
) -> SplitScores:
    """Language-driven scores of ``segmenter`` on the first ``max_images`` (all) labelled ``val`` samples, and
    avgsim (``avgsim``), kNN (``knn``) and linear (``(train_images, config)``) probes on ``data``.

    ``where`` names the split in the error raised when it holds no labelled pixel (a NaN mIoU must never be
    written as a result).
    """
    data = data or ProbeData()
    num_classes = len(classes.names)
    class_text = segmenter.class_embeddings(classes.prompts)
    keep_items = knn is not None or linear is not None
    count = len(val) if max_images is None else min(max_images, len(val))
    confusion = np.zeros((num_classes, num_classes), np.int64)
    val_items: list[DenseItem] = []
    cosines: list[torch.Tensor] = []
    images = 0
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    passes = embedded_samples(segmenter, val, count)
    progress = f"{desc} {split_name}"  # the progress bar names the split scored (val, or tune for the train stage)
    for index, sample, embedding in tqdm(passes, desc=progress, unit="img", mininterval=1.0, total=count):
        if sample.label is None:
            continue
        label = classes.map_labels(sample.label)
        predicted = segment_with_text(embedding[None], class_text, label.shape)[0].cpu().numpy()
        confusion += confusion_matrix(label, predicted, num_classes)
        images += 1
        if avgsim:
            cosines.append(
                superpixel_cosines(
                    embedding, data.val_superpixels[index], data.val_clip_dense[index], data.feature_stride
                )
            )
        if keep_items:
            val_items.append(_item(embedding, label, _at(data.val_superpixels, index)))
    if confusion.sum() == 0:
        raise Clips4Error(
            f"{where}: no labelled pixel to score ({images} labelled images of {count}); "
            "point dataset.val_split at a split with ground-truth masks"
        )
    similarities = torch.cat(cosines) if cosines else torch.zeros(0)
    seconds["language"] = time.perf_counter() - start
    knn_miou = linear_miou = None
    if keep_items:
        start = time.perf_counter()
        train_count = max(knn.train_images if knn else 0, linear[0] if linear else 0)
        train_passes = embedded_samples(segmenter, train, train_count)
        train_items = [
            _item(embedding, classes.map_labels(sample.label), _at(data.train_superpixels, index))
            for index, sample, embedding in tqdm(
                train_passes, desc=f"{desc} train", unit="img", mininterval=1.0, total=train_count
            )
            if sample.label is not None
        ]
        seconds["probe_inputs"] = time.perf_counter() - start
        if knn is not None:
            start = time.perf_counter()
            knn_miou = evaluate_knn(
                train_items[: knn.train_images], val_items, num_classes, k=knn.k, clusters=knn.clusters, seed=knn.seed
            ).miou
            seconds["knn"] = time.perf_counter() - start
        if linear is not None:
            start = time.perf_counter()
            linear_miou = evaluate_linear(train_items[: linear[0]], val_items, num_classes, linear[1]).miou
            seconds["linear"] = time.perf_counter() - start
    return SplitScores(
        confusion=confusion,
        images=images,
        language=scores_from_confusion(confusion, classes.names, images),
        avgsim=float(similarities.mean()) if len(similarities) else None,
        segments=len(similarities),
        knn_miou=knn_miou,
        linear_miou=linear_miou,
        seconds=seconds,
    )
