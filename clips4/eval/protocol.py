"""How an image is read at test time (``eval.protocol``): the dense features that the scorers label.

- ``whole``: MaskCLIP's test, ``test_cfg=dict(mode='whole')`` after mmsegmentation's test-time ``Resize`` with
  ``keep_ratio=True``. The image is resized so that it fits the dataset's ``(long, short)`` scale below (mmcv's
  ``rescale_size``: factor = min(long / long side, short / short side)), read in one forward pass, and the class
  scores are upsampled back to the label's size. Datasets without a scale (the synthetic world) keep their size.
- ``slide``: images larger than ``clip.window`` are read in windows every ``clip.stride`` pixels with the
  overlaps averaged (:func:`clips4.clip.dense.dense_clip_features_sliding`); smaller ones in one pass. The
  default: it needs no per-dataset scale and works for images of any size.

The scales, from the mmsegmentation 0.x configs MaskCLIP inherits (``configs/_base_/datasets/``):

| dataset | config | test ``img_scale`` | effect |
|---|---|---|---|
| voc | ``pascal_voc12_aug.py`` | (2048, 512) | short side 512, long side at most 2048 |
| context | ``pascal_context_59.py`` | (520, 520) | long side 520 |
| cocostuff | ``coco-stuff164k.py`` | (2048, 512) | short side 512, long side at most 2048 |
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from clips4.clip.dense import dense_clip_features, dense_clip_features_sliding
from clips4.params import Params

PROTOCOLS = ("slide", "whole")
TEST_SCALES: dict[str, tuple[int, int]] = {"voc": (2048, 512), "context": (520, 520), "cocostuff": (2048, 512)}


def reading_options(params: Params) -> dict[str, Any]:
    """The reading settings of params (protocol, the dataset's test scale, windows), as the keyword arguments of
    the segmenters (``MaskClipSegmenter``, ``StudentSegmenter``) and of :func:`protocol_features`."""
    return {
        "protocol": params.eval.protocol,
        "dataset_name": params.dataset.name,
        "window": params.clip.window,
        "stride": params.clip.stride,
    }


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


def protocol_features(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    protocol: str,
    dataset_name: str,
    window: int,
    stride: int,
    mode: str,
) -> torch.Tensor:
    """Dense features ``[B, h, w, D]`` of normalised images ``[B, 3, H, W]`` read as ``protocol`` says."""
    if protocol == "whole":
        return dense_clip_features(model, whole_image_resize(images, dataset_name), mode)
    if protocol != "slide":
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if max(images.shape[-2:]) > window:
        return dense_clip_features_sliding(model, images, window, stride, mode)
    return dense_clip_features(model, images, mode)
