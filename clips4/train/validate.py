"""Scoring a student on the val split, for models/clips4.json and the training study (docs/training.md).

- ``miou`` / ``pacc``: language-driven segmentation as the paper's inference does it: each pixel takes the class
  whose prompt-ensembled text embedding is nearest its student embedding (:func:`clips4.eval.language.
  segment_with_text`, the same rule MaskCLIP is scored with), accumulated in one confusion matrix
  (:mod:`clips4.eval.metrics`).
- ``avgsim``: the mean, over the val superpixels, of the cosine between the student's and CLIP's segment
  embeddings, each the normalised mean of its pixel embeddings over the superpixel (the paper's 0.66). CLIP's
  side is read from the caches (clip_dense.zarr with superpixels.zarr), never recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clips4.cache.api import DenseStore, SuperpixelsStore
from clips4.clip.dense import normalize_images, to_rgb_batch
from clips4.data.segmentation import SegmentationDataset
from clips4.eval.language import segment_with_text
from clips4.eval.metrics import confusion_matrix, mean_iou, pixel_accuracy
from clips4.superpixels.embeddings import segment_embeddings

#: ``images [B, 3, H, W]`` (normalised) -> unit pixel embeddings ``[B, D, h, w]``.
DenseEncoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ValidationResult:
    """Val scores of a student: mIoU and pixel accuracy in percent, ``avgsim`` a cosine."""

    miou: float
    pacc: float
    avgsim: float
    images: int
    segments: int


def segment_means(embeddings: torch.Tensor, superpixels: torch.Tensor, num_regions: int) -> torch.Tensor:
    """Unit means ``[n, D]`` of pixel embeddings ``[D, H, W]`` over superpixels ``[H, W]`` (ids 0..n-1)."""
    flat = embeddings.flatten(1).T  # [H*W, D]
    sums = torch.zeros(num_regions, flat.shape[1], dtype=flat.dtype).index_add_(0, superpixels.flatten(), flat)
    return F.normalize(sums, dim=1)


def superpixel_cosines(
    student_pixels: torch.Tensor, superpixels: np.ndarray, clip_dense: np.ndarray, feature_stride: int
) -> torch.Tensor:
    """avgsim's terms for one image: the cosine ``[n]`` of the student's and CLIP's embedding of each non-empty
    superpixel. ``student_pixels`` are unit ``[D, H, W]`` at the image size (CPU), ``superpixels`` ``[H, W]`` ids
    and ``clip_dense`` the cached ``[h, w, D]`` CLIP features at ``feature_stride``."""
    teacher, area = segment_embeddings(superpixels, clip_dense, feature_stride)
    student = segment_means(student_pixels, torch.from_numpy(superpixels.astype(np.int64)), len(area))
    return (student * torch.from_numpy(teacher)).sum(dim=1)[torch.from_numpy(area > 0)]


@torch.no_grad()
def score_student(
    encoder: DenseEncoder,
    dataset: SegmentationDataset,
    dense: DenseStore,
    superpixels: SuperpixelsStore,
    class_text: torch.Tensor,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    split: str = "val",
    max_images: int | None = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> ValidationResult:
    """mIoU, pixel accuracy and avgsim of ``encoder`` over ``split`` (its first ``max_images`` images)."""
    first, stop = dense.splits[split]
    count = min(stop - first, max_images or stop - first)
    num_classes = len(dataset.class_names)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    cosines: list[torch.Tensor] = []
    class_text = class_text.to(device)
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        images = normalize_images(to_rgb_batch([image for _, image in pending]).to(device), mean, std)
        output = encoder(images).float()  # [B, D, h, w]
        labels = segment_with_text(output.permute(0, 2, 3, 1), class_text, tuple(images.shape[-2:])).cpu()
        per_pixel = F.normalize(F.interpolate(output, size=images.shape[-2:], mode="bilinear"), dim=1).cpu()
        for k, (index, _) in enumerate(pending):
            truth = dataset.read_label(index)
            if truth is not None:
                confusion[:] += confusion_matrix(truth, labels[k].numpy(), num_classes)
            row = first + index
            cosines.append(
                superpixel_cosines(per_pixel[k], superpixels.image(row).labels, dense.image(row), dense.feature_stride)
            )
        pending.clear()

    for index in range(count):
        image = dataset.read_image(index)
        if pending and (len(pending) == batch_size or pending[0][1].shape != image.shape):
            flush()
        pending.append((index, image))
    if pending:
        flush()
    similarities = torch.cat(cosines) if cosines else torch.zeros(0)
    return ValidationResult(
        miou=round(mean_iou(confusion), 2),
        pacc=round(pixel_accuracy(confusion), 2),
        avgsim=round(float(similarities.mean()), 4) if len(similarities) else float("nan"),
        images=count,
        segments=len(similarities),
    )
