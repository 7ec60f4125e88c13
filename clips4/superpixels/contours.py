"""Contour detection: the fast multi-scale ``gradient`` detector and the dispatcher over all detectors.

``gradient`` is a cheap stand-in for gPb's local cues (brightness, colour and texture gradients at several scales):

1. channels: CIELAB colour (L, a, b on one scale) plus texture channels, the pooled energy of oriented
   second-derivative-of-Gaussian filters on L, so that regions of the same mean colour but different texture are
   still told apart;
2. each channel is Gaussian-smoothed at the scales sigma * 2^k (k < num_scales) and differentiated; per scale the
   scale-normalised gradients are combined over channels (root of the weighted sum of squares), and the magnitude
   is the *minimum* over scales (a region boundary responds at every scale, texture elements only at fine ones);
3. surround suppression: minus the Gaussian average of the magnitude around each pixel (edges inside a texture
   have as many neighbours as strength and vanish, isolated region boundaries stay);
4. orientation: the doubled-angle average of the gradients (dominant eigenvector of the smoothed structure tensor),
   so opposite gradients (0 and pi) reinforce instead of cancelling;
5. oriented non-maximum suppression that keeps the two pixels straddling each boundary (see
   :func:`clips4.superpixels.nms.straddling_nms`: the boundary is the pixel edge between them, where OWT-UCM puts it),
   then a robust normalisation to [0, 1] by a high percentile of the thinned map, with an absolute floor so that
   a flat, noisy image is not stretched to full-strength boundaries.

Speed: about 0.1 s for a 500x375 image on one core (numpy/scipy only).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.ndimage as ndi
from skimage.color import rgb2lab

from clips4.params import ContourParams
from clips4.superpixels.nms import straddling_nms
from clips4.superpixels.types import ContourMap

DETECTORS = ("gradient", "pmi", "hed")

#: Divisors of the CIELAB channels (L spans 0..100; one scale for all keeps Lab's perceptual distances).
LAB_SCALE = (100.0, 100.0, 100.0)
#: Scales of the texture filters (second derivatives of a Gaussian), in pixels.
TEXTURE_SIGMAS = (1.0,)
#: Orientations of the texture filters (radians).
TEXTURE_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
#: Gaussian window over which the texture energy is pooled, in pixels.
TEXTURE_POOL = 3.0
#: Weight of the texture channels relative to colour (on squared gradients; texture energies are ~10x smaller).
TEXTURE_WEIGHT = 25.0
#: Surround suppression: width (Gaussian sigma, in units of contours.sigma) and strength of the inhibition.
SURROUND_WIDTH = 6.0
SURROUND_ALPHA = 1.0
#: Gaussian window of the structure tensor (orientation estimate), in pixels.
TENSOR_SIGMA = 1.0
#: Percentile of the thinned map that maps to strength 1 (values above are clipped).
NORM_PERCENTILE = 99.0
#: The normaliser is never below this: noise of std 10 grey levels on a flat image peaks about here, while region
#: boundaries of the synthetic world give 99th percentiles of 0.07-0.25.
NORM_FLOOR = 0.05


def colour_channels(image_rgb_uint8: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [3, H, W] float32 CIELAB, each channel divided by its ``LAB_SCALE``."""
    lab = rgb2lab(image_rgb_uint8).astype(np.float32)
    return np.stack([lab[..., c] / LAB_SCALE[c] for c in range(3)])


def texture_channels(luminance: np.ndarray, sigma: float, pool: float) -> np.ndarray:
    """[H, W] -> [len(TEXTURE_ANGLES), H, W]: root of the pooled energy of oriented second derivatives of ``luminance``.

    The second derivative along angle t is steered from the three basis responses: cos^2 t Lxx + sin 2t Lxy +
    sin^2 t Lyy. Its squared response is averaged over a Gaussian window of ``pool`` pixels.
    """
    lxx = ndi.gaussian_filter(luminance, sigma, order=(0, 2))
    lyy = ndi.gaussian_filter(luminance, sigma, order=(2, 0))
    lxy = ndi.gaussian_filter(luminance, sigma, order=(1, 1))
    energy = []
    for t in TEXTURE_ANGLES:
        c, s = np.cos(t), np.sin(t)
        response = (c * c) * lxx + (2 * c * s) * lxy + (s * s) * lyy
        energy.append(ndi.gaussian_filter(response * response, pool))
    # sigma^2 makes the response scale-free; the root brings energy back to the units of a contrast.
    return np.sqrt(np.maximum(np.stack(energy), 0.0)) * np.float32(sigma * sigma)


def feature_channels(image_rgb_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour and texture channels of an image, stacked [C, H, W] float32, and their weights [C]."""
    colour = colour_channels(image_rgb_uint8)
    texture = np.concatenate([texture_channels(colour[0], s, TEXTURE_POOL) for s in TEXTURE_SIGMAS])
    weights = np.concatenate([np.ones(len(colour)), np.full(len(texture), TEXTURE_WEIGHT)])
    return np.concatenate([colour, texture]).astype(np.float32), weights.astype(np.float32)


def multiscale_gradient(
    channels: np.ndarray, weights: np.ndarray, sigma: float, num_scales: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boundary magnitude and normal orientation [H, W] from channels [C, H, W] at scales sigma * 2^k.

    Per scale s, each channel is smoothed by a Gaussian of width s and differentiated (central differences), and
    the gradient is scale-normalised (times s, so a step edge responds alike at every scale); the magnitude at s is
    sqrt(sum_c w_c |grad_c|^2). The magnitude is the *minimum* over scales: a region boundary responds at every
    scale, the edges of texture elements and noise fade at the coarse ones. The orientation comes from the
    structure tensor summed over channels and scales and smoothed by TENSOR_SIGMA.
    """
    _, h, w = channels.shape
    magnitude = np.full((h, w), np.inf, np.float32)
    jxx = np.zeros((h, w), np.float32)
    jyy = np.zeros((h, w), np.float32)
    jxy = np.zeros((h, w), np.float32)
    wc = weights[:, None, None]
    for k in range(num_scales):
        s = sigma * 2.0**k
        smooth = ndi.gaussian_filter(channels, (0, s, s), mode="nearest")
        gy, gx = np.gradient(smooth, axis=(1, 2))
        gx *= np.float32(s)
        gy *= np.float32(s)
        sxx = (wc * gx * gx).sum(axis=0)
        syy = (wc * gy * gy).sum(axis=0)
        np.minimum(magnitude, np.sqrt(sxx + syy), out=magnitude)
        jxx += sxx
        jyy += syy
        jxy += (wc * gx * gy).sum(axis=0)
    jxx, jyy, jxy = (ndi.gaussian_filter(j, TENSOR_SIGMA) for j in (jxx, jyy, jxy))
    orientation = np.mod(0.5 * np.arctan2(2 * jxy, jxx - jyy), np.pi)
    return magnitude, orientation


def surround_suppression(magnitude: np.ndarray, width: float, alpha: float) -> np.ndarray:
    """magnitude - alpha * (its Gaussian average over ``width`` px), clipped at 0.

    Isotropic surround inhibition (as in Grigorescu et al. 2003): inside a texture, edges are everywhere and the
    surround average is as high as the edges themselves, so they vanish; an isolated region boundary loses little.
    """
    return np.maximum(magnitude - alpha * ndi.gaussian_filter(magnitude, width), 0.0)


def normalise(thin: np.ndarray, percentile: float, floor: float) -> np.ndarray:
    """Divide a thinned map by its ``percentile`` (at least ``floor``) and clip to [0, 1]."""
    scale = max(float(np.percentile(thin, percentile)), floor)
    return np.clip(thin / scale, 0.0, 1.0)


def detect_gradient(image_rgb_uint8: np.ndarray, params: ContourParams) -> ContourMap:
    """Multi-scale colour + texture gradient boundaries of one [H, W, 3] uint8 RGB image."""
    _check_image(image_rgb_uint8, "detect_gradient")
    channels, weights = feature_channels(image_rgb_uint8)
    magnitude, orientation = multiscale_gradient(channels, weights, params.sigma, params.num_scales)
    magnitude = surround_suppression(magnitude, SURROUND_WIDTH * params.sigma, SURROUND_ALPHA)
    thin = normalise(straddling_nms(magnitude, orientation), NORM_PERCENTILE, NORM_FLOOR)
    return ContourMap(strength=thin.astype(np.float32), orientation=orientation.astype(np.float32))


def detect_contours(image_rgb_uint8: np.ndarray, params: ContourParams) -> ContourMap:
    """Boundaries of one [H, W, 3] uint8 RGB image by the detector ``params.method`` (one of DETECTORS)."""
    if params.method == "gradient":
        return detect_gradient(image_rgb_uint8, params)
    if params.method == "pmi":
        from clips4.superpixels.pmi import detect_pmi  # lazy: keeps scipy.sparse work out of the gradient path

        return detect_pmi(image_rgb_uint8, params)
    if params.method == "hed":
        from clips4.superpixels.hed import detect_hed  # lazy: imports torch

        return detect_hed(image_rgb_uint8, params)
    raise ValueError(f"contours.method must be one of {', '.join(DETECTORS)}, got {params.method!r}")


def contour_rows(
    images: Iterable[np.ndarray], count: int, size: tuple[int, int], params: ContourParams
) -> dict[str, np.ndarray]:
    """The contours store's rows of ``count`` [H, W, 3] uint8 RGB images (read one at a time, as ``images`` yields
    them), each padded at the bottom and right to ``size``: ``strength`` and ``orientation`` float16
    ``[count, *size]`` (0 in the padding) and ``extent`` int32 ``[count, 2]``, the (height, width) of each image."""
    strength = np.zeros((count, *size), np.float16)
    orientation = np.zeros_like(strength)
    extent = np.zeros((count, 2), np.int32)
    for k, image in zip(range(count), images, strict=True):
        contour_map = detect_contours(image, params)
        height, width = contour_map.strength.shape
        strength[k, :height, :width] = contour_map.strength.astype(np.float16)
        # Orientation only matters on boundary pixels (OWT weights strength by it); zero elsewhere, it compresses
        # like the thinned strength instead of being incompressible noise.
        on_boundary = np.where(contour_map.strength > 0, contour_map.orientation, 0)
        orientation[k, :height, :width] = on_boundary.astype(np.float16)
        extent[k] = contour_map.strength.shape
    return {"strength": strength, "orientation": orientation, "extent": extent}


def _check_image(image: np.ndarray, who: str) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{who} expects an [H, W, 3] uint8 RGB image, got {image.dtype} {image.shape}")
