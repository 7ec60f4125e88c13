"""Two augmented views per image: SimCLR's set, applied jointly to the image, its superpixels and its CLIP map.

The geometric part (random resized crop, horizontal flip) moves the three together: the image bilinearly, the
superpixel map by nearest neighbour (labels must not blend), and the cached dense CLIP map by bilinear
``grid_sample`` on its own feature grid, with the same crop box expressed in that grid's coordinates. CLIP ran once,
on the original image (when the cache was built); as the paper says, its map is augmented afterwards rather than
recomputed per view. The photometric part (colour jitter, grayscale, Gaussian blur) touches the image only.

Every random choice is drawn from the ``generator`` passed in, never from torch's global RNG, so that a resumed run
that restores the generator's state draws the same views (bit-exact resume). The image and label operations are
torchvision's ``transforms.v2`` functionals on ``tv_tensors``; only their parameters are drawn here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from clips4.model.pspnet import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class View:
    """One augmented view.

    - ``image`` float ``[3, c, c]``, normalised with the augment's mean/std;
    - ``superpixels`` long ``[c, c]``, the same ids as the original map (both views of an image share them);
    - ``clip_dense`` float ``[D, s, s]`` (``s`` = ``clip_size``), unit length along D;
    - ``crop_box`` ``(top, left, height, width)`` in the original image's pixels, and ``flipped``.
    """

    image: torch.Tensor
    superpixels: torch.Tensor
    clip_dense: torch.Tensor
    crop_box: tuple[int, int, int, int]
    flipped: bool


class JointAugment:
    """SimCLR's augmentations, geometric ones shared by the image, its superpixels and its cached CLIP map.

    Args:
        crop_size: side ``c`` of the square views (pixels).
        scale: range of the crop's area as a fraction of the image's (SimCLR: ``(0.08, 1.0)``).
        flip: flip horizontally with probability 1/2.
        color_jitter: SimCLR's strength ``s`` (brightness, contrast, saturation ``0.8 s``, hue ``0.2 s``, applied
            with probability 0.8, then grayscale with probability 0.2); 0 disables both.
        blur: Gaussian blur with probability 1/2, sigma in [0.1, 2], kernel about a tenth of the view.
        clip_stride: pixels per CLIP feature (the ``clip_dense`` store's ``feature_stride``).
        clip_size: side of the resampled CLIP map; ``crop_size // student.output_stride`` puts it on the
            student's output grid. Default: ``crop_size``.
        mean, std: normalisation of the image (the student's, ImageNet's by default).
        ratio: range of the crop's aspect ratio (torchvision's default).
    """

    def __init__(
        self,
        crop_size: int,
        scale: tuple[float, float],
        flip: bool,
        color_jitter: float,
        blur: bool,
        *,
        clip_stride: int,
        clip_size: int | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if crop_size < 1 or clip_stride < 1 or not 0 < scale[0] <= scale[1] <= 1 or color_jitter < 0:
            raise ValueError(
                f"JointAugment: crop_size {crop_size} and clip_stride {clip_stride} must be positive, "
                f"scale {scale} within (0, 1] and increasing, color_jitter {color_jitter} >= 0"
            )
        self.crop_size = crop_size
        self.scale = scale
        self.flip = flip
        self.color_jitter = color_jitter
        self.blur = blur
        self.clip_stride = clip_stride
        self.clip_size = clip_size or crop_size
        self.mean = list(mean)
        self.std = list(std)
        self.ratio = ratio

    def __call__(
        self,
        image: np.ndarray | torch.Tensor,
        superpixels: np.ndarray | torch.Tensor,
        clip_dense: np.ndarray | torch.Tensor,
        generator: torch.Generator,
    ) -> View:
        """One view of ``image`` uint8 ``[H, W, 3]``, ``superpixels`` int ``[H, W]`` and ``clip_dense`` ``[h, w, D]``
        (``h = ceil(H / clip_stride)``), drawn from ``generator``."""
        pixels = torch.as_tensor(np.asarray(image))
        if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != torch.uint8:
            raise ValueError(f"JointAugment: image must be uint8 [H, W, 3], got {pixels.dtype} {tuple(pixels.shape)}")
        rgb = tv_tensors.Image(pixels.permute(2, 0, 1).contiguous())
        labels = tv_tensors.Mask(torch.as_tensor(np.asarray(superpixels)).long()[None])
        features = torch.as_tensor(np.asarray(clip_dense)).float()
        height, width = rgb.shape[-2:]
        _check_shapes(rgb, labels, features, self.clip_stride)

        top, left, crop_h, crop_w = self._crop_box(height, width, generator)
        flipped = self.flip and _uniform(generator) < 0.5
        size = [self.crop_size, self.crop_size]
        rgb = TF.resized_crop(rgb, top, left, crop_h, crop_w, size, InterpolationMode.BILINEAR, antialias=True)
        # nearest-exact samples at pixel centres, the same convention as bilinear resizing and the CLIP grid below
        # (resized_crop would resize a Mask with legacy NEAREST, which samples off-centre: crop, then resize)
        labels = TF.resize(TF.crop(labels, top, left, crop_h, crop_w), size, InterpolationMode.NEAREST_EXACT)
        if flipped:
            rgb, labels = TF.horizontal_flip(rgb), TF.horizontal_flip(labels)
        # photometric ops in float: on uint8 each one would convert to float and back (and round)
        rgb = self._photometric(TF.to_dtype(rgb, torch.float32, scale=True), generator)
        rgb = TF.normalize(rgb, self.mean, self.std)
        clip = resample_feature_grid(features, (top, left, crop_h, crop_w), flipped, self.clip_stride, self.clip_size)
        return View(
            image=rgb.as_subclass(torch.Tensor),
            superpixels=labels[0].as_subclass(torch.Tensor),
            clip_dense=clip,
            crop_box=(top, left, crop_h, crop_w),
            flipped=flipped,
        )

    def _crop_box(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop box (10 tries, then the central crop), drawn from ``generator``."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * _uniform(generator, *self.scale)
            aspect = math.exp(_uniform(generator, *log_ratio))
            crop_w = round(math.sqrt(target_area * aspect))
            crop_h = round(math.sqrt(target_area / aspect))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
                return top, left, crop_h, crop_w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            crop_w, crop_h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            crop_h, crop_w = height, round(height * self.ratio[1])
        else:
            crop_w, crop_h = width, height
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w

    def _photometric(self, rgb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        strength = self.color_jitter
        if strength > 0:
            if _uniform(generator) < 0.8:
                factors = {
                    "brightness": _uniform(generator, max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength),
                    "contrast": _uniform(generator, max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength),
                    "saturation": _uniform(generator, max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength),
                    "hue": _uniform(generator, -min(0.5, 0.2 * strength), min(0.5, 0.2 * strength)),
                }
                order = torch.randperm(4, generator=generator).tolist()  # ColorJitter's random order
                for index in order:
                    name = ("brightness", "contrast", "saturation", "hue")[index]
                    rgb = getattr(TF, f"adjust_{name}")(rgb, factors[name])
            if _uniform(generator) < 0.2:
                rgb = TF.rgb_to_grayscale(rgb, num_output_channels=3)
        if self.blur and _uniform(generator) < 0.5:
            kernel = 2 * max(1, self.crop_size // 20) + 1  # odd, about a tenth of the view (SimCLR)
            rgb = TF.gaussian_blur(rgb, [kernel, kernel], [_uniform(generator, 0.1, 2.0)] * 2)
        return rgb


def resample_feature_grid(
    features: torch.Tensor,
    crop_box: tuple[int, int, int, int],
    flipped: bool,
    stride: int,
    size: int,
) -> torch.Tensor:
    """The crop ``(top, left, height, width)`` (image pixels) of a feature grid ``[h, w, D]`` at ``stride``, resampled
    bilinearly to ``[D, size, size]`` (flipped left-right if ``flipped``) and renormalised to unit length.

    Feature ``(i, j)`` covers pixels ``[i s, (i + 1) s)``, so its centre is at ``(i + 1/2) s``; output pixel ``a`` of
    the view sits at ``top + (a + 1/2) height / size`` (pixel centres, as bilinear resizing of the image places it).
    """
    grid_h, grid_w, _ = features.shape
    top, left, crop_h, crop_w = crop_box
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    ys = top + centres * crop_h
    xs = left + (1 - centres if flipped else centres) * crop_w
    # grid_sample's normalised coordinates (align_corners=False): -1 and 1 are the outer edges of the grid
    gy = 2 * ys / (stride * grid_h) - 1
    gx = 2 * xs / (stride * grid_w) - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1).float()[None]
    sampled = F.grid_sample(
        features.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return F.normalize(sampled[0], dim=0)


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Integer maps ``[..., H, W]`` resized to ``size`` by nearest neighbour at pixel centres (e.g. superpixels of a
    view onto the student's output grid)."""
    flat = labels.reshape(-1, 1, *labels.shape[-2:]).double()  # float64 keeps every int32 id exact
    resized = F.interpolate(flat, size=size, mode="nearest-exact")
    return resized.long().reshape(*labels.shape[:-2], *size)


def _uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _check_shapes(rgb: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, stride: int) -> None:
    height, width = rgb.shape[-2:]
    if tuple(labels.shape[-2:]) != (height, width):
        raise ValueError(f"JointAugment: superpixels {tuple(labels.shape[-2:])} differ from the image {height, width}")
    expected = (math.ceil(height / stride), math.ceil(width / stride))
    if features.ndim != 3 or tuple(features.shape[:2]) != expected:
        raise ValueError(
            f"JointAugment: CLIP map {tuple(features.shape)} is not [{expected[0]}, {expected[1]}, D], the grid of a "
            f"{height}x{width} image at stride {stride}"
        )
