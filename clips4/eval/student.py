"""The CLIP-S4 student at test time: its pixel embeddings, and language-driven segmentation with them.

As the paper's inference: each pixel takes the class whose prompt-ensembled CLIP text embedding is nearest its
student embedding; no superpixels, no CLIP image encoder. Images are read as ``eval.protocol`` says, like the
MaskCLIP baseline (:mod:`clips4.eval.protocol`): ``whole`` after the dataset's test resize, or ``slide`` in
windows of ``clip.window`` pixels every ``clip.stride`` when the image is larger, the windows' embeddings averaged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clips4.clip.dense import normalize_images, to_rgb_batch
from clips4.clip.loading import LoadedClip
from clips4.clip.text import text_embeddings
from clips4.errors import Clips4Error
from clips4.eval.language import LanguageClasses, segment_with_text
from clips4.eval.protocol import whole_image_resize


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one side: every ``stride`` pixels, the last window flush with the end."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return [*starts, size - window]


def sliding_embeddings(student: torch.nn.Module, images: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """Unit pixel embeddings ``[B, D, H, W]`` of normalised ``images [B, 3, H, W]`` read in square windows.

    Each window's embeddings are upsampled bilinearly to the window's pixels; overlaps are averaged, then
    re-normalised.
    """
    height, width = images.shape[-2:]
    total = count = None
    for top in window_starts(height, window, stride):
        for left in window_starts(width, window, stride):
            crop = images[..., top : top + window, left : left + window]
            output = F.interpolate(student(crop), size=crop.shape[-2:], mode="bilinear", align_corners=False)
            if total is None:
                total = output.new_zeros((*output.shape[:2], height, width))
                count = output.new_zeros((1, 1, height, width))
            total[..., top : top + crop.shape[-2], left : left + crop.shape[-1]] += output
            count[..., top : top + crop.shape[-2], left : left + crop.shape[-1]] += 1
    return F.normalize(total / count, dim=1)


def student_embeddings(
    student: torch.nn.Module,
    images: torch.Tensor,
    *,
    protocol: str,
    dataset_name: str,
    window: int,
    stride: int,
) -> torch.Tensor:
    """Unit pixel embeddings ``[B, h, w, D]`` (channels last, as the scorers take them) of normalised images."""
    if protocol == "whole":
        embeddings = student(whole_image_resize(images, dataset_name))
    elif max(images.shape[-2:]) > window:
        embeddings = sliding_embeddings(student, images, window, stride)
    else:
        embeddings = student(images)
    return embeddings.permute(0, 2, 3, 1)


def check_teacher(checkpoint: dict, loaded: LoadedClip, path: str | Path) -> None:
    """The student was trained against the CLIP whose text embeddings will label it, or a clear error."""
    trained = checkpoint.get("clip", {})
    now = {"model_name": loaded.model_name, "weights_sha256": loaded.sha256}
    if any(trained.get(key) != value for key, value in now.items() if value is not None):
        raise Clips4Error(
            f"{path}: trained against CLIP {trained.get('model_name')} ({trained.get('weights_sha256')}), but "
            f"clip.model and clip.pretrained load {loaded.model_name} ({loaded.sha256}); its embeddings live in "
            "that CLIP's space: set the params it was trained with, or retrain (`dvc repro`)"
        )


class StudentSegmenter:
    """``segmenter(image [H, W, 3] uint8) -> [H, W]`` indices into ``classes``, with the student's embeddings."""

    def __init__(
        self,
        student: torch.nn.Module,
        loaded: LoadedClip,
        classes: LanguageClasses,
        *,
        protocol: str,
        dataset_name: str,
        window: int,
        stride: int,
    ) -> None:
        self.student = student.eval()
        self.device = next(student.parameters()).device
        self.class_text = text_embeddings(loaded, classes.prompts).to(self.device)
        self.read = dict(protocol=protocol, dataset_name=dataset_name, window=window, stride=stride)

    @torch.no_grad()
    def pixel_embeddings(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """Unit pixel embeddings ``[B, h, w, D]`` of uint8 images (one ``[H, W, 3]`` or several of one size)."""
        batch = normalize_images(to_rgb_batch(images).to(self.device), self.student.mean, self.student.std)
        return F.normalize(student_embeddings(self.student, batch, **self.read), dim=-1)

    def label(self, embeddings: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Class indices ``[B, H, W]`` of :meth:`pixel_embeddings`' output, by the nearest class text."""
        return segment_with_text(embeddings, self.class_text, size).cpu().numpy()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.label(self.pixel_embeddings(image), image.shape[:2])[0]
