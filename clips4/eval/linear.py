"""Linear probe (CLIP-S4's Table 4, right): a per-pixel linear classifier on frozen pixel embeddings.

Training reads a fixed random sample of labelled pixels per train image (255 never sampled). A sampled pixel's
feature is the embedding grid interpolated bilinearly at the pixel's centre, which is what the per-pixel
prediction sees too: a linear map commutes with bilinear interpolation, so upsampling the grid's logits to the
label size scores every pixel with the classifier it was trained as. The classifier is multinomial logistic
regression (with a bias and a small L2 penalty) fitted from zero by full-batch L-BFGS, so the sampling seed
fixes the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clips4.data.types import IGNORE_INDEX
from clips4.errors import Clips4Error
from clips4.eval.probe_inputs import DenseItem, check_item
from clips4.ops.metrics import confusion_matrix, mean_iou, per_class_iou


@dataclass(frozen=True)
class LinearProbeConfig:
    pixels_per_image: int = 64
    """Labelled pixels sampled per train image (6000 images -> 384k pixels, 0.8 GB of features at D = 512)."""
    steps: int = 100
    """L-BFGS iterations over the whole sample."""
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pixels_per_image < 1 or self.steps < 1 or self.weight_decay < 0:
            raise Clips4Error(
                f"linear probe settings {self}: need pixels_per_image >= 1, steps >= 1 and weight_decay >= 0"
            )


def features_at(
    embeddings: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``[m, D]`` bilinear features of the ``[D, h, w]`` grid at pixel centres ``(rows, cols)`` of an ``[H, W]`` map.

    Uses ``grid_sample`` with ``align_corners=False``, the sampling rule of ``F.interpolate(mode="bilinear")``.
    """
    height, width = size
    x = (cols.float() + 0.5) / width * 2 - 1
    y = (rows.float() + 0.5) / height * 2 - 1
    grid = torch.stack([x, y], dim=-1).to(embeddings.device)[None, None]  # [1, 1, m, 2]
    sampled = F.grid_sample(embeddings.float()[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0, :, 0].T


def sample_pixels(item: DenseItem, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``count`` labelled pixels of one image: features ``[m, D]`` and labels ``[m]``."""
    label = torch.from_numpy(item.label.astype(np.int64))
    labelled = torch.nonzero(label.flatten() != IGNORE_INDEX).flatten()
    chosen = labelled[torch.randperm(len(labelled), generator=generator)[:count]]
    rows, cols = chosen // label.shape[1], chosen % label.shape[1]
    return features_at(item.embeddings, rows, cols, tuple(label.shape)), label.flatten()[chosen]


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, config: LinearProbeConfig
) -> torch.nn.Linear:
    """Multinomial logistic regression ``D -> num_classes`` on ``[N, D]`` features, on their device."""
    probe = torch.nn.Linear(features.shape[1], num_classes).to(features.device)
    with torch.no_grad():  # the loss is convex: start from zero, which needs no random state
        probe.weight.zero_()
        probe.bias.zero_()
    optimiser = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=config.steps, line_search_fn="strong_wolfe")
    labels = labels.to(features.device)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(probe(features), labels) + config.weight_decay * probe.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return probe.eval()


@torch.no_grad()
def predict(probe: torch.nn.Linear, embeddings: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Class ids ``[H, W]`` (uint8) from ``[D, h, w]`` embeddings: grid logits upsampled bilinearly, then argmax."""
    logits = torch.einsum("dhw,cd->chw", embeddings.float().to(probe.weight.device), probe.weight)
    logits = logits + probe.bias[:, None, None]
    scores = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
    return scores.argmax(dim=0).to(torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class LinearResult:
    """Set-level linear-probe scores (percent) with the confusion matrix they come from."""

    miou: float
    per_class_iou: np.ndarray
    confusion: np.ndarray
    train_pixels: int


def evaluate_linear(
    train: Iterable[DenseItem],
    val: Iterable[DenseItem],
    num_classes: int,
    config: LinearProbeConfig | None = None,
) -> LinearResult:
    """Fit the probe on sampled train pixels, then score every val pixel over the whole set."""
    config = config or LinearProbeConfig()
    generator = torch.Generator().manual_seed(config.seed)
    features, labels = [], []
    for index, item in enumerate(train):
        check_item(item, index)
        x, y = sample_pixels(item, config.pixels_per_image, generator)
        features.append(x)
        labels.append(y)
    if not features or sum(len(y) for y in labels) == 0:
        raise Clips4Error("linear probe: no labelled train pixel; check that the train labels are not all 255")
    probe = fit_linear_probe(torch.cat(features), torch.cat(labels), num_classes, config)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for index, item in enumerate(val):
        check_item(item, index)
        confusion += confusion_matrix(item.label, predict(probe, item.embeddings, item.label.shape), num_classes)
    return LinearResult(
        miou=mean_iou(confusion),
        per_class_iou=per_class_iou(confusion),
        confusion=confusion,
        train_pixels=sum(len(y) for y in labels),
    )
