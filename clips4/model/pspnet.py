"""The student: a backbone, PSPNet's pyramid pooling module, and a 1x1 projection to unit pixel embeddings.

The pyramid pooling module (Zhao et al., CVPR 2017, as in mmseg's ``PSPHead``) pools the backbone's map to
1x1, 2x2, 3x3 and 6x6 grids, projects each with a 1x1 conv, upsamples them back and concatenates them with the
map, so that each pixel's embedding also sees its region and the whole image: the context that tells a patch of
"grass" in a field from one in a painting. A 3x3 bottleneck then fuses them, and a 1x1 projection maps each
pixel into CLIP's D-dimensional space, normalised to unit length (the losses compare directions only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clips4.model.backbones import ConvNetBackbone, ResNetBackbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class StudentConfig:
    """One student architecture (a ``model_configs/*.json`` file, plus keyword overrides).

    ``backbone`` is ``resnet`` (torchvision's, ``depth`` 50/101/152, mmseg's per-stage ``strides``/``dilations``)
    or ``convnet`` (``widths``, ``strides``, ``dilations``: one residual block per stage).
    """

    name: str
    backbone: str
    embed_dim: int
    strides: list[int]
    dilations: list[int]
    pool_scales: list[int] = field(default_factory=lambda: [1, 2, 3, 6])
    head_channels: int = 512
    dropout: float = 0.1
    depth: int | None = None
    widths: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module and bottleneck: ``[B, C, h, w] -> [B, channels, h, w]``."""

    def __init__(self, in_channels: int, channels: int, pool_scales: list[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(scale),
                nn.Conv2d(in_channels, channels, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for scale in pool_scales
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + len(pool_scales) * channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False) for branch in self.branches]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class Student(nn.Module):
    """Pixel embeddings: ``forward(images [B, 3, H, W]) -> [B, D, ceil(H / os), ceil(W / os)]``, unit along dim 1.

    ``images`` are float RGB normalised with ``mean``/``std`` (ImageNet's). ``config`` is the resolved architecture
    as a dict (what a checkpoint stores to rebuild the model with :func:`clips4.model.build_student`).
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        if config.backbone == "resnet":
            self.backbone: nn.Module = ResNetBackbone(config.depth or 50, config.strides, config.dilations)
        else:
            self.backbone = ConvNetBackbone(config.widths or [], config.strides, config.dilations)
        self.head = PyramidPooling(self.backbone.out_channels, config.head_channels, config.pool_scales)
        self.dropout = nn.Dropout2d(config.dropout)
        self.projection = nn.Conv2d(config.head_channels, config.embed_dim, 1)
        self.output_stride: int = self.backbone.output_stride
        self.embed_dim = config.embed_dim
        self.config = config.to_dict()
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.projection(self.dropout(self.head(self.backbone(images))))
        return F.normalize(embeddings, dim=1)
