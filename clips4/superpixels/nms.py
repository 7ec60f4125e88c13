"""Oriented non-maximum suppression, shared by the contour detectors (gradient, pmi, hed)."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi


def _along_normal(strength: np.ndarray, orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``strength`` one pixel ahead and one behind along the normal (bilinear), each [H, W]."""
    h, w = strength.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = np.sin(orientation), np.cos(orientation)
    ahead = ndi.map_coordinates(strength, [yy + dy, xx + dx], order=1, mode="nearest")
    behind = ndi.map_coordinates(strength, [yy - dy, xx - dx], order=1, mode="nearest")
    return ahead, behind


def oriented_nms(strength: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Keep pixels that are maxima along the boundary normal (``orientation`` = normal angle), zero the rest.

    The two neighbours one pixel ahead and behind along the normal are read by bilinear interpolation, so a
    ridge of any orientation thins to one pixel.
    """
    ahead, behind = _along_normal(strength, orientation)
    return np.where((strength >= ahead) & (strength >= behind), strength, 0.0)


def straddling_nms(strength: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Oriented NMS that keeps the *two* pixels between which each boundary passes.

    A boundary between regions runs between pixels, but a one-pixel line puts it on a pixel, and a watershed must
    then hand that pixel to one side or the other blindly. Here every maximum is kept together with its 4-neighbour
    on the side of the sub-pixel peak (vertex of the parabola through the three samples along the normal; the
    neighbour along the dominant axis of the normal), each with its own strength: the boundary is the pixel edge
    between the two, where OWT-UCM (mean of the two ends as edge weight) puts it.
    """
    h, w = strength.shape
    ahead, behind = _along_normal(strength, orientation)
    is_max = (strength >= ahead) & (strength >= behind) & (strength > 0)
    curvature = ahead - 2.0 * strength + behind  # < 0 at a strict maximum
    ys, xs = np.nonzero(is_max & (curvature < 0))
    offset = 0.5 * (behind[ys, xs] - ahead[ys, xs]) / curvature[ys, xs]  # peak at pixel + offset * normal
    side = np.where(offset >= 0, 1.0, -1.0)
    ny, nx = side * np.sin(orientation[ys, xs]), side * np.cos(orientation[ys, xs])
    along_x = np.abs(nx) >= np.abs(ny)
    ty = ys + np.where(along_x, 0, np.sign(ny)).astype(np.int64)
    tx = xs + np.where(along_x, np.sign(nx), 0).astype(np.int64)
    inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    keep = is_max.copy()
    keep[ty[inside], tx[inside]] = True
    return np.where(keep, strength, 0.0)
