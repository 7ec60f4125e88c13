"""How an image is read into dense embeddings at test time (``eval.protocol``), for CLIP and the student alike:
the one reader behind :class:`clips4.inference.segmenter.Segmenter`, so evaluation, the report, ``clips4 segment``
and the clip_dense cache read images the same way.

- ``whole``: MaskCLIP's test, ``test_cfg=dict(mode='whole')`` after mmsegmentation's test-time ``Resize`` with
  ``keep_ratio=True``. The image is resized so that it fits the dataset's ``(long, short)`` scale below (mmcv's
  ``rescale_size``: factor = min(long / long side, short / short side)), read in one forward pass, and the class
  scores are upsampled back to the label's size. Datasets without a scale (the synthetic world) keep their size.
- ``slide``: images larger than ``clip.window`` are read in windows every ``clip.stride`` pixels with the
  overlaps averaged (:func:`clips4.ops.windows.sliding_window_mean`); smaller ones in one pass. The
  default: it needs no per-dataset scale and works for images of any size.

The scales, from the mmsegmentation 0.x configs MaskCLIP inherits (``configs/_base_/datasets/``):

| dataset | config | test ``img_scale`` | effect |
|---|---|---|---|
| voc | ``pascal_voc12_aug.py`` | (2048, 512) | short side 512, long side at most 2048 |
| context | ``pascal_context_59.py`` | (520, 520) | long side 520 |
| cocostuff | ``coco-stuff164k.py`` | (2048, 512) | short side 512, long side at most 2048 |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clips4.clip.dense import dense_clip_features, dense_clip_features_sliding
from clips4.ops.windows import sliding_window_mean

PROTOCOLS = ("slide", "whole")
TEST_SCALES: dict[str, tuple[int, int]] = {"voc": (2048, 512), "context": (520, 520), "cocostuff": (2048, 512)}


@dataclass(frozen=True)
class ReadSettings:
    """How images are read into dense embeddings: the protocol, the dataset (the ``whole`` protocol's test scale),
    the sliding windows, and CLIP's dense mode (MaskCLIP's reading only)."""

    protocol: str = "slide"
    dataset_name: str = "synth"
    window: int = 448
    stride: int = 224
    dense_mode: str = "maskclip"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; expected one of {PROTOCOLS}")

    @classmethod
    def from_params(cls, params: Any) -> ReadSettings:
        """From a :class:`clips4.params.Params` (``eval.protocol``, ``dataset.name``, ``clip.*``)."""
        return cls(
            protocol=params.eval.protocol,
            dataset_name=params.dataset.name,
            window=params.clip.window,
            stride=params.clip.stride,
            dense_mode=params.clip.dense_mode,
        )

    @classmethod
    def from_recorded(cls, params: dict[str, Any]) -> ReadSettings:
        """From the resolved params a checkpoint records (``params.to_dict()``); absent keys take the defaults."""
        clip, evaluation = params.get("clip", {}), params.get("eval", {})
        return cls(
            protocol=evaluation.get("protocol", cls.protocol),
            dataset_name=params.get("dataset", {}).get("name", cls.dataset_name),
            window=int(clip.get("window", cls.window)),
            stride=int(clip.get("stride", cls.stride)),
            dense_mode=clip.get("dense_mode", cls.dense_mode),
        )


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` after a keep-ratio resize to ``scale`` (mmcv's ``rescale_size``, rounded half up)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def whole_image_resize(images: torch.Tensor, dataset_name: str) -> torch.Tensor:
    """``images [B, 3, H, W]`` resized to the dataset's test scale (the ``whole`` protocol); kept as they are for a
    dataset without one."""
    scale = TEST_SCALES.get(dataset_name)
    if scale is None:
        return images
    size = rescale_size(images.shape[-2], images.shape[-1], scale)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def clip_features(model: torch.nn.Module, images: torch.Tensor, settings: ReadSettings) -> torch.Tensor:
    """CLIP's unit dense features ``[B, h, w, D]`` (MaskCLIP) of normalised images ``[B, 3, H, W]``."""
    mode = settings.dense_mode
    if settings.protocol == "whole":
        return dense_clip_features(model, whole_image_resize(images, settings.dataset_name), mode)
    if max(images.shape[-2:]) > settings.window:
        return dense_clip_features_sliding(model, images, settings.window, settings.stride, mode)
    return dense_clip_features(model, images, mode)


def student_features(student: torch.nn.Module, images: torch.Tensor, settings: ReadSettings) -> torch.Tensor:
    """The student's unit pixel embeddings ``[B, h, w, D]`` of normalised images ``[B, 3, H, W]``: on its output
    grid, or at the image's pixels where the image was read in windows (each window's output upsampled
    bilinearly to its pixels before the overlaps are averaged)."""
    if settings.protocol == "whole":
        embeddings = student(whole_image_resize(images, settings.dataset_name)).permute(0, 2, 3, 1)
    elif max(images.shape[-2:]) > settings.window:

        def window_pixels(crop: torch.Tensor) -> torch.Tensor:
            output = F.interpolate(student(crop), size=crop.shape[-2:], mode="bilinear", align_corners=False)
            return output.permute(0, 2, 3, 1)

        embeddings = sliding_window_mean(
            window_pixels, images, settings.window, settings.stride, crops_per_forward=images.shape[0]
        )
    else:
        embeddings = student(images).permute(0, 2, 3, 1)
    return F.normalize(embeddings, dim=-1)
