"""HED contour detector (Xie & Tu, "Holistically-nested edge detection", ICCV 2015) from a user-supplied weights file.

The network is VGG16 conv1-conv5 with a 1x1 "score" conv on the last layer of each stage (side outputs),
bilinear upsampling of each side output to the input size, and a 1x1 conv fusing the five; sigmoid.
Its layout (and the key names of :meth:`HedNet.state_dict`) follows the widely used PyTorch conversion of the
authors' Caffe model (``network-bsds500.pytorch`` of the pytorch-hed project: ``netVggOne`` ... ``netCombine``);
the older ``moduleVggOne`` ... ``moduleCombine`` naming of the same file is accepted too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch
from torch import nn

from clips4.errors import Clips4Error
from clips4.params import ContourParams
from clips4.superpixels.types import ContourMap

#: Caffe preprocessing of the original model: BGR channel means on the 0-255 scale.
BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)

WEIGHTS_HELP = (
    "HED needs pretrained weights: download the PyTorch conversion 'network-bsds500.pytorch' of the "
    "pytorch-hed project (github.com/sniklaus/pytorch-hed), or convert the original Caffe model "
    "(hed_pretrained_bsds.caffemodel from the HED authors' page, github.com/s9xie/hed), "
    "and set contours.hed_weights in params.yaml to its path (or use contours.method: gradient or pmi)"
)

_STAGE_NAMES = ("One", "Two", "Thr", "Fou", "Fiv")
_STAGE_CONVS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


def _stage(c_in: int, c_out: int, n_convs: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if pool else []
    for i in range(n_convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.ReLU(inplace=False)]
    return nn.Sequential(*layers)


class HedNet(nn.Module):
    """VGG16 trunk + five side outputs + fusion; ``forward`` maps a preprocessed [B, 3, H, W] to [B, 1, H, W]."""

    def __init__(self) -> None:
        super().__init__()
        for k, (name, (c_in, c_out, n)) in enumerate(zip(_STAGE_NAMES, _STAGE_CONVS, strict=True)):
            self.add_module(f"netVgg{name}", _stage(c_in, c_out, n, pool=k > 0))
            self.add_module(f"netScore{name}", nn.Conv2d(c_out, 1, 1))
        self.netCombine = nn.Sequential(nn.Conv2d(5, 1, 1), nn.Sigmoid())

    def side_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five side-output score maps, each upsampled to the input size (before the sigmoid)."""
        h, w = x.shape[-2:]
        sides = []
        for name in _STAGE_NAMES:
            x = getattr(self, f"netVgg{name}")(x)
            score = getattr(self, f"netScore{name}")(x)
            sides.append(nn.functional.interpolate(score, size=(h, w), mode="bilinear", align_corners=False))
        return sides

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.netCombine(torch.cat(self.side_outputs(x), dim=1))


def _normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the old pytorch-hed naming (``moduleVggOne.0.weight``) and DataParallel's ``module.`` prefix to ours."""
    out = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith("module"):
            key = "net" + key[len("module") :]
        out[key] = value
    return out


def load_hed(weights: str | Path | None) -> HedNet:
    """HedNet in eval mode with the weights from ``weights``; a :class:`Clips4Error` when missing or unusable."""
    if weights is None:
        raise Clips4Error(f"params.yaml: contours.method is hed but contours.hed_weights is not set. {WEIGHTS_HELP}.")
    path = Path(weights)
    if not path.is_file():
        raise Clips4Error(f"{path}: HED weights file (contours.hed_weights) not found. {WEIGHTS_HELP}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or non-torch file
        raise Clips4Error(
            f"{path}: cannot read the HED weights file (contours.hed_weights): {type(exc).__name__}. {WEIGHTS_HELP}."
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise Clips4Error(f"{path}: not a state dict of tensors (contours.hed_weights). {WEIGHTS_HELP}.")
    net = HedNet()
    try:
        net.load_state_dict(_normalise_keys(state), strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "key mismatch"
        raise Clips4Error(
            f"{path}: the state dict does not fit the HED network (contours.hed_weights): {first}. {WEIGHTS_HELP}."
        ) from exc
    return net.eval()


def preprocess(image_rgb_uint8: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 RGB -> [1, 3, H, W] float BGR, 0-255 scale, Caffe mean subtracted (as the original model)."""
    bgr = image_rgb_uint8[..., ::-1].astype(np.float32) - np.asarray(BGR_MEAN, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]


def hed_probability(net: HedNet, image_rgb_uint8: np.ndarray) -> np.ndarray:
    """Fused HED boundary probability [H, W] in [0, 1]."""
    with torch.inference_mode():
        return net(preprocess(image_rgb_uint8))[0, 0].numpy().astype(np.float64)


def thin_and_orient(probability: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Orientation (boundary normal, [0, pi)) from the smoothed map's gradient; strength thinned by oriented NMS."""
    from clips4.superpixels.nms import oriented_nms  # shared NMS; imported here to keep module imports light

    smooth = ndi.gaussian_filter(probability, sigma)
    gy, gx = ndi.sobel(smooth, axis=0), ndi.sobel(smooth, axis=1)
    orientation = np.mod(np.arctan2(gy, gx), np.pi)
    return oriented_nms(probability, orientation), orientation


_CACHE: dict[str, HedNet] = {}


def detect_hed(image_rgb_uint8: np.ndarray, params: ContourParams) -> ContourMap:
    """HED boundaries of one [H, W, 3] uint8 RGB image (weights from ``params.hed_weights``, loaded once)."""
    key = str(params.hed_weights)
    if key not in _CACHE:
        _CACHE.clear()  # one network at a time: VGG16 weights are ~60 MB
        _CACHE[key] = load_hed(params.hed_weights)
    strength, orientation = thin_and_orient(hed_probability(_CACHE[key], image_rgb_uint8))
    return ContourMap(
        strength=np.clip(strength, 0.0, 1.0).astype(np.float32), orientation=orientation.astype(np.float32)
    )
