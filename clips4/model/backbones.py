"""Backbones of the student: torchvision's dilated ResNet (the paper's PSPNet-R50-D8) and a small residual
ConvNet for the synthetic world.

Both return one feature map ``[B, C, H / os, W / os]`` and say their ``out_channels`` and ``output_stride``.
The ResNet's ImageNet weights are read from a local file or torch's hub cache, never downloaded: a training job on
a cluster node often has no network, and a silent download would make the run depend on what a mirror served.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path

import torch
import torchvision
from torch import nn

from clips4.errors import Clips4Error

#: torchvision's published file names for the ImageNet weights (IMAGENET1K_V1, then V2), by depth.
TORCHVISION_WEIGHT_FILES = {
    50: ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    101: ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"),
    152: ("resnet152-394f9c45.pth", "resnet152-f82ba261.pth"),
}


class ResNetBackbone(nn.Module):
    """torchvision's ResNet without its classifier, with strides replaced by dilation (mmseg's ``-d8`` variant).

    ``strides``/``dilations`` are mmseg's per-stage values: ``(1, 2, 1, 1)``/``(1, 1, 2, 4)`` gives output stride 8.
    """

    def __init__(self, depth: int, strides: list[int], dilations: list[int]) -> None:
        super().__init__()
        if depth not in TORCHVISION_WEIGHT_FILES:
            raise Clips4Error(f"model.depth: {depth} is not a dilatable ResNet depth; use one of 50, 101, 152")
        replace = _dilation_plan(strides, dilations)
        body = getattr(torchvision.models, f"resnet{depth}")(weights=None, replace_stride_with_dilation=replace)
        del body.fc, body.avgpool  # a dense model: no global pooling, no classifier
        self.body = body
        self.depth = depth
        self.out_channels = body.layer4[-1].conv3.out_channels
        self.output_stride = 4 * math.prod(strides)  # the stem (conv stride 2, max-pool stride 2), then the stages

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = self.body
        x = b.maxpool(b.relu(b.bn1(b.conv1(images))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def load_imagenet(self, path: str | Path | None) -> Path:
        """Load torchvision's ImageNet weights from ``path`` (or the hub cache when None); returns the file used."""
        path = find_imagenet_weights(self.depth) if path is None else Path(path)
        if not path.is_file():
            raise Clips4Error(
                f"{path}: ImageNet weights file not found; copy torchvision's resnet{self.depth} weights "
                f"({' or '.join(TORCHVISION_WEIGHT_FILES[self.depth])}) there, "
                "or set train.random_init: true to train from scratch"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as err:
            raise Clips4Error(
                f"{path}: not a readable torch weights file ({str(err).splitlines()[0]}); re-copy it"
            ) from err
        if not isinstance(state, dict):
            raise Clips4Error(f"{path}: holds a {type(state).__name__}, not a ResNet state dict; re-copy it")
        state = {k: v for k, v in state.get("state_dict", state).items() if not k.startswith("fc.")}
        try:
            self.body.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise Clips4Error(
                f"{path}: weights do not fit a ResNet-{self.depth} ({str(err).splitlines()[0]}); use torchvision's "
                f"resnet{self.depth} ImageNet file"
            ) from err
        return path


def find_imagenet_weights(depth: int) -> Path:
    """torchvision's ResNet weights in torch's hub cache (``torch.hub.get_dir()/checkpoints``), or a clear error."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob(f"resnet{depth}-*.pth"))
    if not found:
        names = " or ".join(TORCHVISION_WEIGHT_FILES.get(depth, (f"resnet{depth}-*.pth",)))
        raise Clips4Error(
            f"{folder}: no ImageNet weights for resnet{depth} (looked for resnet{depth}-*.pth); copy torchvision's "
            f"{names} there "
            "or set train.backbone_weights to its path, or set train.random_init: true to train from scratch"
        )
    return found[0]


def _dilation_plan(strides: list[int], dilations: list[int]) -> list[bool]:
    """torchvision's ``replace_stride_with_dilation`` for mmseg-style per-stage strides and dilations."""
    if len(strides) != 4 or len(dilations) != 4 or strides[0] != 1 or dilations[0] != 1:
        raise Clips4Error(
            f"model.strides/dilations: {strides}/{dilations} do not describe 4 ResNet stages starting at stride 1, "
            "dilation 1; use e.g. [1, 2, 1, 1]/[1, 1, 2, 4] (output stride 8)"
        )
    replace, dilation = [], 1
    for stride, wanted in zip(strides[1:], dilations[1:], strict=True):
        if stride not in (1, 2):
            raise Clips4Error(f"model.strides: {strides} has a stride other than 1 or 2")
        replace.append(stride == 1)  # torchvision's stages stride 2 unless that stride becomes dilation
        dilation *= 2 if stride == 1 else 1
        if wanted != dilation:
            raise Clips4Error(
                f"model.dilations: {dilations} does not follow from strides {strides} (a stage whose stride 2 is "
                f"removed doubles the dilation); use {_dilations_for(strides)}"
            )
    return replace


def _dilations_for(strides: list[int]) -> list[int]:
    out, dilation = [1], 1
    for stride in strides[1:]:
        dilation *= 2 if stride == 1 else 1
        out.append(dilation)
    return out


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected) identity shortcut: ResNet's basic block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ConvNetBackbone(nn.Module):
    """A small residual ConvNet: a 3x3 stem convolution, then one basic block per further stage.

    Stage 0 is the stem (``widths[0]`` channels, stride ``strides[0]``); stage ``i > 0`` is a basic block with
    ``widths[i]`` channels, stride ``strides[i]`` and dilation ``dilations[i]``. The output stride is the product of
    the strides. A strided stem keeps the cost of the full-resolution layer low (it dominates on CPU); dilation keeps
    the late stages' receptive field growing without striding further.
    """

    def __init__(self, widths: list[int], strides: list[int], dilations: list[int]) -> None:
        super().__init__()
        if not (len(widths) == len(strides) == len(dilations)) or not widths:
            raise Clips4Error(
                f"model.widths/strides/dilations: {widths}/{strides}/{dilations} must be lists of the same, "
                "non-zero length (one entry per stage)"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, strides[0], padding=dilations[0], dilation=dilations[0], bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks = [ResidualBlock(widths[i - 1], widths[i], strides[i], dilations[i]) for i in range(1, len(widths))]
        self.stages = nn.Sequential(*blocks)
        self.out_channels = widths[-1]
        self.output_stride = math.prod(strides)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(images))
