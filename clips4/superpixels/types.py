"""Types shared by the contour detectors and OWT-UCM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContourMap:
    """Boundary map of one image, every detector's output.

    ``strength``: float32 ``[H, W]`` in [0, 1], non-maximum suppressed: one pixel wide for ``pmi`` and ``hed``;
    ``gradient`` keeps the two pixels that straddle a boundary, so that the watershed line falls on the pixel edge
    between them (see docs/segments.md); ``orientation``: float32
    ``[H, W]``, the angle of the boundary *normal* in [0, pi) (0 for a vertical edge, pi/2 for a horizontal one).
    """

    strength: np.ndarray
    orientation: np.ndarray
